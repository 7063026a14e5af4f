//! The Grafana Loki push API double (to be written).
