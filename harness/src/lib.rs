//! The splitbrain engine: SSH control, the local lab, systems under test, the runner,
//! the store and the CLI. `main.rs` only calls [`cli::main`].

pub mod check;
pub mod cli;
pub mod cluster_args;
pub mod config;
pub mod control;
pub mod doctor;
pub mod fault;
pub mod known_answer;
pub mod lab;
pub mod log;
pub mod nodes;
pub mod progress;
pub mod report;
pub mod runner;
pub mod serve;
pub mod store;
pub mod summary;
pub mod systems;
pub mod test_all;
