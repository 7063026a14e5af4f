//! The Elasticsearch / OpenSearch `_bulk` API double (to be written).
