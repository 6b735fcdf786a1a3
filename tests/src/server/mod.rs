//! A reference Sheepdog 1.0 server, faithful to PROTOCOL.md, for
//! integration tests, CI and quick starts: one store, served by one node
//! or by several.
//!
//! * [`Cluster`] is the protocol logic: VID bitmaps, VDI states, locks,
//!   generational reference counts and objects in a [`Store`]
//!   ([`MemStore`] in memory, [`DirStore`] as sparse files). Its
//!   [`Cluster::handle`] answers one request; it has no clock, no
//!   randomness and no I/O besides the store.
//! * Fault injection ([`Cluster::inject`] with a [`Matcher`] and a
//!   [`FaultAction`]) and [`Cluster::snapshot_behind_back`] let tests
//!   provoke transient errors and READONLY.
//! * [`net`] serves a cluster over TCP, one thread per connection, with an
//!   option to answer pipelined requests out of order; [`spawn_loopback`]
//!   starts one on 127.0.0.1 for a test.
//! * [`spawn_nodes`] serves one cluster as several nodes whose
//!   [`ServerHandle`] can kill, black-hole and revive each, and
//!   [`Cluster::lose_object`] loses an object on all of them: what client
//!   failover is tested against.
//! * Each node has its own copies ([`Cluster::copy_of`]): where sheep's
//!   placement puts them ([`Cluster::targets`]), whole objects or strips
//!   of erasure-coded ones, unless a test removed, corrupted or added one
//!   on that node ([`Cluster::remove_copy`], [`Cluster::corrupt_copy`],
//!   [`Cluster::add_copy`]). GET_HASH, the peer requests, REPAIR_REPLICA
//!   and GET_OBJ_LIST answer about the copies of the node asked
//!   ([`Cluster::handle_on`]): what `dog vdi check`-like tools are tested
//!   against.
//!
//! ```
//! use sheepdog_tests::server::{Cluster, ClusterConfig};
//! use sheepdog_core::wire::{NewVdi, Request, ResultCode};
//!
//! let mut cluster = Cluster::new(ClusterConfig::default());
//! let req = Request::new_vdi(1, NewVdi { vdi_size: 1 << 30, ..NewVdi::default() });
//! let mut name = [0u8; 256];
//! name[..5].copy_from_slice(b"alice");
//! let reply = cluster.handle(1 << 32, &req, &name);
//! assert_eq!(reply.result(), ResultCode::Success);
//! assert_eq!(reply.vdi_id(), Some(0xa03907)); // hash of "alice"
//! ```

mod admin;
mod attr;
mod cluster;
mod config;
mod delete;
mod dir_store;
mod faults;
pub mod hyper;
mod info_ops;
mod inode_io;
mod lock_ops;
mod lookup;
mod membership;
mod meta;
mod nodes;
mod obj_ops;
mod peer_ops;
mod refcount;
mod replica_hooks;
mod replicas;
mod reply;
mod snapshot_window;
mod store;
mod vdi_ops;
mod vdi_state;
mod watch;

pub mod net;

pub use cluster::{Cluster, Reply};
pub use config::{ClusterConfig, ClusterStatus, NodeInfo, FLAG_AUTO_VNODES, FLAG_USE_LOCK};
pub use dir_store::DirStore;
pub use faults::{FaultAction, Matcher, RequestPredicate};
pub use net::{serve, spawn, spawn_loopback, NetOptions, ServerHandle};
pub use nodes::{spawn_nodes, spawn_on};
pub use refcount::Ledger;
pub use snapshot_window::{PendingSnapshot, Restore};
pub use store::{MemStore, Store};
pub use vdi_state::{LockState, VdiState};
