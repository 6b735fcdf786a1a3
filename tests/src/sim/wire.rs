//! The engine and the pure reference server in one process, with no
//! sockets: requests go straight into [`Cluster::handle`], replies wait on
//! a simulated wire and are delivered in random order; faults are injected
//! on the way.

use std::collections::{HashMap, HashSet};

use sheepdog_core::engine::{Engine, Event, RetryPolicy, Token, SCRATCH_LEN, TRANSMIT_BUF_LEN};
use sheepdog_core::receive::{ReadBuffers, Receiver};
use sheepdog_core::wire::{ArgsKind, Opcode, Request, Response, ResultCode, HEADER_LEN};

use super::hostile::{self, Hostile};
use super::rng::Rng;
use crate::server::Cluster;

/// Requests in flight in the simulated engine.
pub const QUEUE: usize = 16;
/// The simulated engine.
pub type SimEngine = Engine<Vec<u8>, QUEUE>;

/// How often things go wrong, in events per thousand requests.
#[derive(Clone, Copy, Debug, Default)]
pub struct FaultRates {
    /// Answer with a transient result without applying the request.
    pub transient: u32,
    /// Apply an object request, then answer with a transient result (the
    /// engine's resend must be harmless).
    pub applied_then_transient: u32,
    /// Deliver replies out of order.
    pub reorder: bool,
    /// Answer as a hostile or broken server would: a wrong length, a
    /// wrong or repeated id, a VID out of range, a corrupt inode header, a
    /// result code not in the table, a payload cut short by a closed
    /// connection, or no reply at all ([`super::hostile`]). Operations may
    /// then end in errors; none may end in a success it did not get.
    pub hostile: u32,
    /// The gateway dies as this request reaches it: neither it nor any
    /// request after it is applied, the replies it had not sent are lost
    /// (their requests were applied), and the client goes on over another
    /// node of the same cluster, one epoch later.
    pub node_death: u32,
}

/// Counters of what happened.
#[derive(Clone, Copy, Debug, Default)]
pub struct WireStats {
    /// Requests the server saw.
    pub requests: u64,
    /// Transient results injected.
    pub transient: u64,
    /// Requests applied but answered with a transient result.
    pub applied_then_transient: u64,
    /// Connections dropped.
    pub disconnects: u64,
    /// Replies a hostile server changed.
    pub hostile: u64,
    /// Of those, replies the engine refused (the connection was dropped).
    pub refused: u64,
    /// Replies cut short by a closed connection.
    pub cut_short: u64,
    /// Requests never answered (the reply timeout dropped the connection).
    pub silent: u64,
    /// Gateways that died, and the client moved to another node.
    pub node_switches: u64,
    /// Requests sent to a dead gateway and never applied.
    pub unapplied: u64,
}

/// A reply on its way.
struct Delivery {
    bytes: Vec<u8>,
    /// The connection closes after these bytes.
    cut: bool,
}

/// Engine, server and the wire between them.
pub struct Wire {
    /// Virtual time in nanoseconds.
    pub now: u64,
    /// The server.
    pub cluster: Cluster,
    /// The engine under test.
    pub engine: Box<SimEngine>,
    /// Buffers of reads and writes in flight, by token.
    pub bufs: HashMap<Token, Vec<u8>>,
    /// Fault rates.
    pub faults: FaultRates,
    /// Counters.
    pub stats: WireStats,
    rng: Rng,
    tx: Vec<u8>,
    /// Replies on the way to the engine.
    replies: Vec<Delivery>,
    rx: Receiver,
    scratch: Vec<u8>,
    /// Ids of requests sent on this connection and not yet answered.
    outstanding: HashSet<u32>,
    /// The id of the last reply delivered.
    answered: Option<u32>,
    /// Every request and reply as the server saw them, when recording.
    pub recording: Option<Vec<(Vec<u8>, Vec<u8>)>>,
    /// A scripted hostile server for scenario tests: given each request
    /// and its true reply, what to send instead (`None`: the true reply).
    pub tamper: Option<Tamper>,
    /// The gateway is dead: requests reaching it are dropped.
    dead: bool,
}

/// The read buffers, by token, for the receiver.
struct SimBuffers<'a>(&'a mut HashMap<Token, Vec<u8>>);

impl ReadBuffers for SimBuffers<'_> {
    fn read_buffer(&mut self, token: Token) -> Option<&mut [u8]> {
        self.0.get_mut(&token).map(Vec::as_mut_slice)
    }
}

/// See [`Wire::tamper`].
pub type Tamper = Box<dyn FnMut(&Request, &[u8]) -> Option<Hostile>>;

const TRANSIENT: [ResultCode; 5] = [
    ResultCode::WaitForJoin,
    ResultCode::Halt,
    ResultCode::NetworkError,
    ResultCode::ClusterError,
    ResultCode::Again,
];

impl Wire {
    /// A wire to `cluster`, with an engine whose index cache holds
    /// `index_entries` entries.
    pub fn new(cluster: Cluster, seed: u64, index_entries: usize) -> Wire {
        let retry = RetryPolicy {
            max_retries: 12,
            initial_backoff: 1_000_000,
            max_backoff: 100_000_000,
        };
        Wire {
            now: 1 << 40,
            cluster,
            engine: Box::new(Engine::new(vec![0u8; index_entries * 4], retry)),
            bufs: HashMap::new(),
            faults: FaultRates::default(),
            stats: WireStats::default(),
            rng: Rng::new(seed ^ 0x5eed),
            tx: vec![0u8; TRANSMIT_BUF_LEN],
            replies: Vec::new(),
            rx: Receiver::new(),
            scratch: vec![0u8; SCRATCH_LEN],
            outstanding: HashSet::new(),
            answered: None,
            recording: std::env::var_os("SIM_RECORD").map(|_| Vec::new()),
            tamper: None,
            dead: false,
        }
    }

    /// Take the fault choices (which reply is hostile, and how) from
    /// `script` before falling back to the seed: a fuzzer's bytes.
    pub fn script_faults(&mut self, script: &[u8]) {
        self.rng = Rng::scripted(script);
    }

    /// Replies waiting to be delivered.
    pub fn replies_pending(&self) -> usize {
        self.replies.len()
    }

    fn transmit(&mut self) {
        while let Some(t) = self
            .engine
            .poll_transmit(&mut self.tx)
            .expect("a transmit buffer of TRANSMIT_BUF_LEN")
        {
            self.outstanding.insert(t.id);
            let mut bytes = self.tx[..t.header_len].to_vec();
            if let Some(d) = &t.data {
                let buf = &self.bufs[&d.token];
                bytes.extend_from_slice(&buf[d.range.start as usize..d.range.end as usize]);
            }
            let req = Request::parse_bytes(&bytes).expect("engine emits 48-byte headers");
            assert_eq!(
                bytes.len() - HEADER_LEN,
                req.payload_len() as usize,
                "WRITE flag exactly when a payload follows"
            );
            self.stats.requests += 1;
            if self.dead || self.rng.chance(self.faults.node_death) {
                self.dead = true;
                self.stats.unapplied += 1;
                continue;
            }
            let is_obj = req.opcode.args_kind() == ArgsKind::Obj;
            let reply = if self.rng.chance(self.faults.transient) {
                self.stats.transient += 1;
                let r = TRANSIENT[self.rng.below(TRANSIENT.len() as u64) as usize];
                Response::to_request(&req, r, 0).to_bytes().to_vec()
            } else {
                let mut reply = self.cluster.handle(self.now, &req, &bytes[HEADER_LEN..]);
                if let Some(rec) = self.recording.as_mut() {
                    rec.push((bytes.clone(), reply.to_bytes()));
                }
                if is_obj
                    && req.opcode != Opcode::ReadObj
                    && self.rng.chance(self.faults.applied_then_transient)
                {
                    self.stats.applied_then_transient += 1;
                    reply.header.result = ResultCode::WaitForJoin;
                    reply.header.data_length = 0;
                    reply.payload.clear();
                }
                reply.to_bytes()
            };
            let scripted = self.tamper.as_mut().and_then(|f| f(&req, &reply));
            let hostile = match scripted {
                Some(h) => Some(h),
                None if self.rng.chance(self.faults.hostile) => {
                    let outstanding = &self.outstanding;
                    let in_flight = |id: u32| outstanding.contains(&id);
                    Some(hostile::tamper(&mut self.rng, &req, &reply, in_flight, self.answered).1)
                }
                None => None,
            };
            if let Some(h) = hostile {
                self.stats.hostile += 1;
                match h {
                    Hostile::Reply(bytes) => self.replies.push(Delivery { bytes, cut: false }),
                    Hostile::CutShort(bytes) => self.replies.push(Delivery { bytes, cut: true }),
                    Hostile::Silent => self.stats.silent += 1,
                }
                continue;
            }
            self.replies.push(Delivery {
                bytes: reply,
                cut: false,
            });
        }
    }

    fn deliver(&mut self) {
        let i = if self.faults.reorder {
            self.rng.below(self.replies.len() as u64) as usize
        } else {
            0
        };
        let Delivery { bytes, cut } = self.replies.remove(i);
        if bytes.len() >= HEADER_LEN {
            let id = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
            self.outstanding.remove(&id);
        }
        // Through the one receive path, in pieces of random size, as a
        // socket hands them over.
        let mut at = 0;
        let mut whole = false;
        let mut bufs = SimBuffers(&mut self.bufs);
        while at < bytes.len() {
            let into = self
                .rx
                .buffer(&mut *self.engine, &mut bufs, &mut self.scratch);
            let room = into.len().min(bytes.len() - at);
            let n = if self.rng.chance(250) {
                1 + self.rng.below(room as u64) as usize
            } else {
                room
            };
            into[..n].copy_from_slice(&bytes[at..at + n]);
            at += n;
            match self
                .rx
                .advance(&mut *self.engine, n, &self.scratch, self.now)
            {
                Ok(done) => whole = done,
                Err(e) => {
                    assert!(
                        self.faults.hostile > 0 || self.tamper.is_some(),
                        "reply refused: {e}"
                    );
                    self.stats.refused += 1;
                    return self.disconnect();
                }
            }
        }
        if cut {
            // The reply stops short and the connection closes.
            self.stats.cut_short += 1;
            return self.disconnect();
        }
        assert!(
            whole && !self.rx.in_reply(),
            "a whole reply ends exactly at its last byte"
        );
        self.answered = Some(u32::from_le_bytes(
            bytes[8..12].try_into().expect("4 bytes"),
        ));
    }

    /// One round: send what can be sent, deliver some replies (or let time
    /// pass to the next retry). False when nothing at all can happen.
    pub fn step(&mut self) -> bool {
        self.transmit();
        if self.dead {
            self.switch_node();
            return true;
        }
        if !self.replies.is_empty() {
            let n = 1 + self.rng.below(self.replies.len() as u64) as usize;
            for _ in 0..n {
                if self.replies.is_empty() {
                    break;
                }
                self.deliver();
            }
            self.now += 1_000 + self.rng.below(50_000);
            return true;
        }
        if self.engine.in_flight() > 0 {
            // Requests the server never answered: the client's reply
            // timeout drops the connection. Only a hostile server leaves
            // any: otherwise every request was answered at once, and a
            // request in flight with no reply is the engine's bug.
            assert!(
                self.faults.hostile > 0 || self.tamper.is_some(),
                "requests in flight that no reply answers"
            );
            self.now += 1_000_000_000;
            self.disconnect();
            return true;
        }
        if let Some(t) = self.engine.poll_timeout() {
            self.now = self.now.max(t);
            self.engine.handle_timeout(self.now);
            return true;
        }
        false
    }

    /// The connection drops: replies not yet delivered are lost (their
    /// requests may or may not have been applied), and the engine resends.
    pub fn disconnect(&mut self) {
        self.stats.disconnects += 1;
        self.rx.reset();
        self.replies.clear();
        self.outstanding.clear();
        self.answered = None;
        self.engine.handle_connection_lost();
    }

    /// The gateway died: after a while (the client notices the closed
    /// connection), the client is connected to another node, which runs
    /// at the next epoch, and resends what had no reply.
    pub fn switch_node(&mut self) {
        self.dead = false;
        self.stats.node_switches += 1;
        self.now += 1_000_000 + self.rng.below(100_000_000);
        self.cluster.bump_epoch();
        self.disconnect();
    }

    /// Drive until `done` returns true for an event; every event is passed
    /// to `on_event` first. Panics if the engine stalls.
    pub fn drive_until(&mut self, mut on_event: impl FnMut(&mut Wire, &Event) -> bool) {
        for _ in 0..10_000_000u64 {
            while let Some(ev) = self.engine.poll_event() {
                if on_event(self, &ev) {
                    return;
                }
            }
            if !self.step() {
                if let Some(ev) = self.engine.poll_event() {
                    if on_event(self, &ev) {
                        return;
                    }
                    continue;
                }
                panic!("engine stalled: nothing to send, receive or wait for");
            }
        }
        panic!("engine did not finish within the step bound");
    }
}
