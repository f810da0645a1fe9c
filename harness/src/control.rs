//! SSH control (being written).
