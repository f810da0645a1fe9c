//! `splitbrain`: the command-line entry point.
mod nodes;
fn main() {}
