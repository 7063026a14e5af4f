//! SDK-HMAC-SHA256 signing (to be written).
