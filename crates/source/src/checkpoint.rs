//! The SQLite checkpoint store (to be written).
