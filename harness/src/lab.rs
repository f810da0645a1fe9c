//! Local lab cluster (being written).
