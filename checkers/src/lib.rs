//! Pure analysis of operation histories. This crate owns the history model and every
//! checker; it does no I/O beyond parsing from readers it is handed, and never
//! depends on tokio or on any other crate of the workspace.

pub mod availability;
pub mod blocks;
pub mod compact;
pub mod dual_master;
pub mod formats;
pub mod history;
pub mod linear;
pub mod lost_writes;
pub mod models;
pub mod operation;
pub mod pipeline;
pub mod scan;
pub mod verdict;
pub mod visualize;

pub use history::{Op, OpType, Process};
pub use verdict::Validity;
