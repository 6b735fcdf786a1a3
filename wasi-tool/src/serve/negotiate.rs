//! The handshake side of the loop: each option a client sends, answered
//! by `core::nbd::handshake`; a connection that asks for an export waits
//! (parked) until the export's gateway connection has opened the volume,
//! then enters transmission.

use sheepdog_core::nbd::handshake::{Answer, Export as NbdExport, Outcome, Question, Refusal};
use sheepdog_core::nbd::handshake::{Step, REPLY_BUF_LEN};
use sheepdog_core::nbd::request::Limits;
use sheepdog_core::nbd::{transmission_flags as tf, MAX_PAYLOAD};

use super::conn::{Conn, Phase};
use super::export::{ConnId, Export, State};
use super::{budget, Server};
use crate::cluster::vdis::collect;
use crate::cluster::Client;
use crate::error::{CliError, Kind};
use crate::target::Target;
use sheepdog_core::engine::VolumeInfo;
use std::time::{Duration, Instant};

/// How long a listing of the cluster's VDIs answers NBD_OPT_LIST.
const LIST_FRESH: Duration = Duration::from_secs(2);

impl Server<'_> {
    /// Handle one handshake message, if a whole one is there and the
    /// client is taking its replies.
    pub(super) fn negotiate(&mut self, c: &mut Conn) -> bool {
        if c.tls_pending() || !budget::may_negotiate(c.unsent()) {
            return false;
        }
        let step = c.negotiate(&mut self.scratch);
        match step {
            Err(e) => {
                self.log(&format!("{}: closing: {e}", c.peer));
                c.dead = true;
                false
            }
            Ok(Step::NeedMore { .. }) => false,
            Ok(Step::Answered { consumed, reply }) => {
                c.consume(consumed);
                c.out.put(&self.scratch[..reply]);
                true
            }
            Ok(Step::StartTls { consumed, reply }) => {
                c.consume(consumed);
                c.out.put(&self.scratch[..reply]);
                c.start_tls();
                false
            }
            Ok(Step::Close { consumed, reply }) => {
                c.consume(consumed);
                c.out.put(&self.scratch[..reply]);
                c.closing = true;
                false
            }
            Ok(Step::Ask { consumed, question }) => {
                c.consume(consumed);
                self.ask(c, question);
                true
            }
        }
    }

    /// Answer a question about the exports, or park the connection until
    /// its export is open.
    fn ask(&mut self, c: &mut Conn, q: Question) {
        if q == Question::List {
            return self.list(c);
        }
        let name = q.name().unwrap_or_default().to_vec();
        let (key, target, writable) = match self.resolve(&name) {
            Ok(r) => r,
            Err((why, msg)) => return self.refuse(c, &q, why, &msg),
        };
        if self.stopping.is_some() {
            return self.refuse(c, &q, Refusal::Shutdown, "the server is stopping");
        }
        if !self.exports.contains_key(&key) {
            let lock = writable && !self.cfg.no_lock;
            let opened = Export::open(key.clone(), target, writable, lock, self.cfg);
            match opened {
                Ok(e) => {
                    self.exports.insert(key.clone(), e);
                }
                Err(e) => return self.refuse(c, &q, Refusal::Failed, &e.to_string()),
            }
        }
        c.phase = Phase::Waiting(Box::new(q), key);
        self.answer_one(c);
    }

    /// Connections parked on an export whose state changed.
    pub(super) fn answer_waiting(&mut self) {
        let waiting: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c.phase, Phase::Waiting(..)))
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            if let Some(mut c) = self.conns.remove(&id) {
                self.answer_one(&mut c);
                self.conns.insert(id, c);
            }
        }
    }

    /// Answer a parked connection whose export has come to a state.
    fn answer_one(&mut self, c: &mut Conn) {
        let Phase::Waiting(q, key) = std::mem::replace(&mut c.phase, Phase::Negotiating) else {
            return;
        };
        // The wait was ours: the client's time limit starts again.
        c.since = Instant::now();
        let q = *q;
        let Some(e) = self.exports.get_mut(&key) else {
            // Closed meanwhile: open it again.
            return self.ask(c, q);
        };
        match &e.state {
            State::Opening | State::Closing => {
                c.phase = Phase::Waiting(Box::new(q), key);
            }
            State::Closed => {
                self.exports.remove(&key);
                self.ask(c, q);
            }
            State::Failed(err) => {
                let why = match err.kind() {
                    Kind::NoSuchVdi => Refusal::Unknown,
                    Kind::Locked => Refusal::Policy,
                    _ => Refusal::Failed,
                };
                let msg = err.to_string();
                if e.users == 0 && e.quiet() {
                    self.exports.remove(&key);
                }
                self.refuse(c, &q, why, &msg);
            }
            State::Open(info) => {
                let info = *info;
                self.admit(c, q, key, info);
            }
        }
    }

    /// The export `key` is open as `info`: answer the client's GO (or
    /// EXPORT_NAME, INFO) with it, and enter transmission.
    fn admit(&mut self, c: &mut Conn, q: Question, key: String, info: VolumeInfo) {
        let Some(e) = self.exports.get_mut(&key) else {
            return;
        };
        let mut flags = tf::SEND_FLUSH | tf::SEND_DF | tf::CAN_MULTI_CONN;
        // A hyper volume is served read-only: its B-tree inserts
        // are not written yet.
        if e.writable && !info.hyper {
            flags |= tf::SEND_FUA | tf::SEND_TRIM | tf::SEND_WRITE_ZEROES | tf::SEND_FAST_ZERO;
        } else {
            flags |= tf::READ_ONLY;
        }
        let description = format!(
            "Sheepdog {} {} (VID {:x}, {} copies)",
            if info.snapshot { "snapshot" } else { "VDI" },
            key,
            info.vid,
            info.copies
        );
        let export = NbdExport {
            name: key.as_bytes(),
            description: description.as_bytes(),
            size: info.size,
            flags,
            min_block: 1,
            // The spec wants it no larger than the maximum.
            preferred_block: info.object_size.min(MAX_PAYLOAD),
            max_block: MAX_PAYLOAD,
        };
        let answer = c.hs.answer_export(&mut self.scratch, &q, Ok(&export));
        match answer {
            Ok(Answer { reply, outcome }) => {
                c.out.put(&self.scratch[..reply]);
                match outcome {
                    Outcome::Continue => {}
                    Outcome::Close => c.closing = true,
                    Outcome::Transmission(neg) => {
                        e.users += 1;
                        e.idle_since = None;
                        let limits = Limits {
                            size: info.size,
                            read_only: !e.writable || info.hyper,
                            structured: neg.structured,
                            base_allocation: neg.base_allocation,
                        };
                        let mode = if e.writable && !info.hyper {
                            "read-write"
                        } else {
                            "read-only"
                        };
                        let msg = format!("{}: {key} ({mode})", c.peer);
                        c.phase = Phase::Transmission {
                            export: key,
                            neg,
                            limits,
                            object_size: info.object_size,
                        };
                        self.log(&msg);
                    }
                }
            }
            Err(err) => {
                self.log(&format!("{}: closing: {err}", c.peer));
                c.dead = true;
            }
        }
    }

    fn refuse(&mut self, c: &mut Conn, q: &Question, why: Refusal, msg: &str) {
        self.log(&format!("{}: refused: {msg}", c.peer));
        match c.hs.answer_export(&mut self.scratch, q, Err((why, msg))) {
            Ok(Answer { reply, outcome }) => {
                c.out.put(&self.scratch[..reply]);
                if outcome == Outcome::Close {
                    c.closing = true;
                }
            }
            Err(_) => c.dead = true,
        }
    }

    /// The export an NBD name means: its key, what it opens, whether it
    /// is writable.
    fn resolve(&self, name: &[u8]) -> Result<(String, Target, bool), (Refusal, String)> {
        let unknown = |m: String| (Refusal::Unknown, m);
        let Ok(name) = std::str::from_utf8(name) else {
            return Err(unknown("the export name is not UTF-8".into()));
        };
        let t = if name.is_empty() {
            match self.allowed.first() {
                Some((_, t)) => t.clone(),
                None => return Err(unknown("no default export: name a VDI".into())),
            }
        } else {
            Target::parse(name).map_err(|e| unknown(e.to_string()))?
        };
        if t.server.is_some() {
            return Err(unknown(format!("'{name}' names a server")));
        }
        let key = t.display();
        if !self.allowed.is_empty() && !self.allowed.iter().any(|(k, _)| *k == key) {
            return Err(unknown(format!("{key} is not exported here")));
        }
        let writable = t.snapshot.is_none() && !self.cfg.read_only;
        Ok((key, t, writable))
    }

    /// NBD_OPT_LIST: the exports named on the command line, or every VDI
    /// and snapshot of the cluster.
    fn list(&mut self, c: &mut Conn) {
        let names: Result<Vec<String>, CliError> = if self.allowed.is_empty() {
            self.cluster_exports()
        } else {
            Ok(self.allowed.iter().map(|(k, _)| k.clone()).collect())
        };
        let mut buf = vec![0u8; REPLY_BUF_LEN];
        match names {
            Ok(names) => {
                for n in names {
                    if let Ok(len) = c.hs.answer_list_entry(&mut buf, n.as_bytes()) {
                        c.out.put(&buf[..len]);
                    }
                }
                if let Ok(len) = c.hs.answer_list_end(&mut buf) {
                    c.out.put(&buf[..len]);
                }
            }
            Err(e) => {
                self.log(&format!("{}: cannot list: {e}", c.peer));
                if let Ok(len) = c.hs.answer_list_error(&mut buf, &e.to_string()) {
                    c.out.put(&buf[..len]);
                }
            }
        }
    }

    /// Every VDI and snapshot of the cluster by export name: listed at
    /// most once per [`LIST_FRESH`], however many clients ask (a listing
    /// reads every inode, and holds the loop while it does).
    fn cluster_exports(&mut self) -> Result<Vec<String>, CliError> {
        if let Some((at, names)) = &self.listed {
            if at.elapsed() < LIST_FRESH {
                return Ok(names.clone());
            }
        }
        let names: Vec<String> = Client::connect(self.cfg.gateways.clone(), self.cfg.quiet)
            .and_then(|mut client| collect(&mut client))?
            .iter()
            .map(|r| r.export_name())
            .collect();
        self.listed = Some((Instant::now(), names.clone()));
        Ok(names)
    }
}
