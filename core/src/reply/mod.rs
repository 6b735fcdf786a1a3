//! The floor under every machine that reads replies: what can go wrong
//! ([`Error`], [`BadReply`], [`Problem`]), where a reply's payload goes
//! ([`Incoming`], [`Receive`], [`Replies`]), how a reply is checked
//! against its request before anything in it is believed (`check`), and
//! the one [`Exchange`] for the conversations outside the engine that ask
//! one thing at a time (the node list, a node's objects, one object, an
//! attribute).
//!
//! It imports nothing above the wire and the object model: the engine,
//! the lister, the receive path and the exchanges all build on it, and it
//! on none of them.
//!
//! | file | what |
//! |---|---|
//! | `error.rs` | [`Error`], [`BadReply`], [`Target`], [`Problem`] |
//! | `incoming.rs` | [`Token`], [`DataRange`], [`Receive`], [`Incoming`], the [`Replies`] trait |
//! | `check.rs` | a reply's header against its request; inode headers, index entries, cluster defaults (PROTOCOL.md §1, §2.4, §8) |
//! | `exchange.rs` | [`Exchange`] over a [`Conversation`] |

pub(crate) mod check;
mod error;
mod exchange;
mod incoming;

pub(crate) use check::Asked;
pub use check::Want;
pub use error::{BadReply, Error, Problem, Target};
pub use exchange::{Accept, Conversation, Exchange, Next};
pub use incoming::{DataRange, Incoming, Receive, Replies, Token};
