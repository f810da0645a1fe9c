//! Fault planning. This crate decides *what* to break and renders each fault and its
//! heal as exact shell commands per node; it never runs anything (the harness does).
//! Pure and unit-testable: no I/O, no async.

pub mod clock;
pub mod grudge;
pub mod iptables;
pub mod marker;
pub mod netem;
pub mod process;
pub mod shell;
pub mod targets;
pub mod topology;

pub use grudge::{Grudge, GrudgeError};
pub use targets::Targets;
pub use topology::{Plan, Topology};
