//! zoo: reference servers for the architectures splitbrain tests, the flawed ones
//! included, so the harness has targets whose right answers are known.
//!
//! The harness uses [`proto`] (the wire types) and [`client`] (an async client);
//! the rest is the server: [`config`] (flags; [`config_file`] for `--config`),
//! [`run`] (process lifecycle), [`daemon`] (detaching), [`server`] (TCP front),
//! [`peers`] (peer connections),
//! [`store`] (durable data), [`eventlog`] (the node log) and one module per mode
//! under [`modes`]; [`router`] is the `zoo router` process.

pub mod client;
pub mod config;
pub mod config_file;
pub mod daemon;
pub mod data;
pub mod eventlog;
pub mod modes;
pub mod peers;
pub mod proto;
pub mod router;
pub mod run;
pub mod server;
pub mod store;
pub mod wire;
