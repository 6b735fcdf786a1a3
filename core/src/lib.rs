//! # sheepdog-core
//!
//! The client side of the [Sheepdog] 1.0 block storage protocol, without
//! I/O, without an allocator and without a clock: it encodes requests,
//! decodes responses, knows the object model (object ids, the inode and
//! its index, the VDI bitmaps, names and addresses) and drives the volume
//! logic. Callers own every buffer; the crate never copies object data.
//!
//! It builds for `thumbv7em-none-eabihf` and `wasm32-unknown-unknown` as well
//! as for hosts: firmware, unikernels and WebAssembly sandboxes can speak to a
//! real cluster with it.
//!
//! ## Layers
//! - [`wire`]: the 48-byte request and response headers ([`wire::Frame`] is a
//!   checked view over bytes, [`wire::Request`] and [`wire::Response`] parse
//!   and emit), opcodes, flags and result codes with their classes.
//! - [`oid`], [`object_size`], [`redundancy`]: object ids, object sizes and
//!   size limits, copies and erasure codes.
//! - [`inode`], [`index`], [`btree`]: the inode header, the flat index
//!   over a caller's buffer, the smallest byte ranges a client writes, and
//!   a hyper volume's B-tree: read, and rebuilt from the cache after
//!   writes ([`btree::commit`]).
//! - [`hash`], [`bitmap`]: FNV-1a and the VID hash; the 2 MiB VID bitmaps.
//! - [`address`]: `vdi`, `vdi@snap`, QEMU's `host:port:vdi:snap` and
//!   `sheepdog://host:port/vdi#snap`.
//! - [`engine`]: the sans-IO volume engine (open, read, write, discard,
//!   create, snapshot, clone, resize, delete, rollback), pipelined, with
//!   copy-on-write, batched index updates, READONLY re-resolution and
//!   bounded retries. Its module docs teach the run loop.
//! - [`list`]: listing every VDI and snapshot from the VID bitmaps.
//! - [`nbd`]: the server side of NBD, for serving volumes to QEMU, the
//!   kernel and qemu-img: handshake, requests and replies, sans-IO too.
//! - [`sparse`]: the sparse rule: write, write zeros, release or skip.
//! - [`reply`]: the floor under every machine that reads replies: the
//!   errors, where a payload goes, the checks of a reply against its
//!   request, and the one [`reply::Exchange`] for the conversations that
//!   ask one thing at a time: [`nodes`] (the node list), [`obj_list`] (the
//!   objects a node stores), [`object_op`] (one object outside any index:
//!   vmstate, B-tree leaves) and [`attr`] (VDI attributes, `dog vdi
//!   setattr`).
//! - [`rbd_diff`], [`dog_backup`]: the diff streams of `rbd export-diff`
//!   and of `dog vdi backup`, read sans-IO through one trait
//!   ([`stream::StreamDecoder`]).
//! - [`receive`]: the one receive path: replies read off a byte stream
//!   straight into the buffers they belong in, blocking or not.
//! - [`driver`]: a blocking driver over `embedded-io` for firmware.
//!
//! ## Example: build a lookup request
//! ```
//! use sheepdog_core::address::{encode_name_tag, parse_vdi_address};
//! use sheepdog_core::wire::{Request, HEADER_LEN};
//!
//! let addr = parse_vdi_address("alice@before-upgrade").unwrap();
//! let req = Request::get_vdi_info(7, 0);
//! let header: [u8; HEADER_LEN] = req.to_bytes();
//! let mut payload = [0u8; 512];
//! encode_name_tag(addr.name.as_bytes(), b"before-upgrade", &mut payload);
//! assert_eq!(header[1], 0x14); // GET_VDI_INFO
//! assert_eq!(req.payload_len(), 512);
//! ```
//!
//! ## The run loop
//! The engine never does I/O: the caller sends what it is given, reads
//! replies where it is told, and says what time it is. Over any
//! `embedded-io` connection, opening a VDI looks like this (the
//! [`driver`] is this loop, for every operation):
//! ```no_run
//! use embedded_io::{Read, Write};
//! use sheepdog_core::engine::{ControlDone, Engine, Error, Event, RetryPolicy};
//! use sheepdog_core::engine::{SCRATCH_LEN, TRANSMIT_BUF_LEN};
//! use sheepdog_core::receive::{NoBuffers, ReceiveError, Receiver};
//!
//! fn open<C: Read + Write>(conn: &mut C, now: impl Fn() -> u64) -> Result<ControlDone, Error> {
//!     let mut engine: Engine<[u8; 4096], 4> = Engine::new([0; 4096], RetryPolicy::default());
//!     let mut tx = [0u8; TRANSMIT_BUF_LEN];
//!     let mut scratch = [0u8; SCRATCH_LEN];
//!     let mut rx = Receiver::new();
//!     engine.open("vm1", None, false)?;
//!     loop {
//!         // 1. Send every request that is ready (a write's data follows
//!         //    its header: the range `t.data` of the caller's buffer).
//!         while let Some(t) = engine.poll_transmit(&mut tx)? {
//!             conn.write_all(&tx[..t.header_len]).expect("send");
//!         }
//!         // 2. Take completions.
//!         while let Some(event) = engine.poll_event() {
//!             if let Event::Control(done) = event {
//!                 return Ok(done);
//!             }
//!         }
//!         // 3. Read one reply into where it belongs, or wait for the
//!         //    next retry. Any receive error: reconnect, then call
//!         //    `engine.handle_connection_lost()` and `rx.reset()`.
//!         if engine.in_flight() > 0 {
//!             match rx.receive(&mut engine, conn, &mut NoBuffers, &mut scratch, &mut || now()) {
//!                 Ok(()) => {}
//!                 Err(ReceiveError::Reply(e)) => return Err(e),
//!                 Err(_) => return Err(Error::ConnectionLost),
//!             }
//!         } else if let Some(at) = engine.poll_timeout() {
//!             // (sleep until `at`)
//!             engine.handle_timeout(at);
//!         }
//!     }
//! }
//! ```
//!
//! ## Panics and errors
//! Nothing in this crate panics on bytes from the network: decoding a header
//! cannot fail once 48 bytes are there, unknown opcodes and results are kept
//! as values, and every other decoder returns a [`error::DecodeError`].
//! Arguments from users (names, sizes, addresses) get their own error types
//! with messages a person can act on. Every error is a small `Copy` value
//! with a `Display`.
//!
//! A server is not trusted either. The [`engine`] checks every reply
//! against the request it answers (id, opcode, result, payload length, the
//! VIDs and inode fields it names) before it believes any of it: a reply
//! header that does not fit gets its connection dropped and its request
//! sent again (to another node, if the caller has one), until the retry
//! policy gives up and the operation ends with an error naming what was
//! wrong; a payload whose content cannot be ends its operation at once. It never reports a
//! success it did not get, and every operation it accepts ends in exactly
//! one event, within a bounded number of replies, retries and lost
//! connections (the engine's module docs, "Liveness").
//!
//! [Sheepdog]: https://github.com/sheepdog/sheepdog
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod address;
pub mod attr;
pub mod bitmap;
pub mod btree;
pub mod dog_backup;
pub mod driver;
pub mod engine;
pub mod epoch_log;
pub mod erasure;
pub mod error;
pub mod hash;
pub mod index;
pub mod inode;
pub mod list;
pub mod lookup;
pub mod nbd;
pub mod nodes;
pub mod obj_list;
pub mod object_op;
pub mod object_size;
pub mod oid;
pub mod peer_reply;
pub mod placement;
pub mod rbd_diff;
pub mod read_vdis;
pub mod receive;
pub mod redundancy;
pub mod reply;
pub mod sparse;
pub mod stream;
pub mod vdi_state;
pub mod verdict;
pub mod wire;
