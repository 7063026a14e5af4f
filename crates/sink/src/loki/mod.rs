//! The Grafana Loki sink (to be written).
