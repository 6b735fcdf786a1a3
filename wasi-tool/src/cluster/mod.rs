//! The cluster as the commands see it: a connection with its engine that
//! fails over between nodes ([`Client`]), the nodes to try
//! ([`Gateways`]), the steps every command shares (connect, open, run a
//! control operation, close: `session`), the one-request exchanges on a
//! connection (`raw`), and what the cluster holds beyond one VDI's data:
//! the list of VDIs (`vdis`), the objects each node stores (`objects`), VM
//! states (`vmstate`) and hyper volumes' B-trees (`btree`).
//!
//! It takes plain values (a [`Gateways`], a target), never the command
//! line.

pub mod attrs;
pub mod btree;
pub mod client;
pub mod delete;
pub mod gateways;
pub mod objects;
pub mod raw;
pub mod session;
pub mod states;
pub mod status;
pub mod tree;
pub mod vdis;
pub mod vmstate;

pub use client::{Client, Eng, DEFAULT_QUEUE_DEPTH, QUEUE_MAX};
pub use gateways::Gateways;
