//! The Elasticsearch / OpenSearch sink (to be written).
