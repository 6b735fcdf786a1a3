//! The transmission side of the loop: each request a client sends,
//! parsed by `core::nbd::request` and checked against what was
//! negotiated, answered at once (block status, errors) or handed to its
//! export's engine; and what the engines finished, routed back to each
//! client as replies.

use sheepdog_core::nbd::request::{Command, Parse, Request};
use sheepdog_core::nbd::{cmd_flags, Errno};

use super::conn::{Conn, Incoming, Phase};
use super::export::State;
use super::{reply, status, Held, Server};

impl Server<'_> {
    /// Take one request (and its payload), if a whole one is there and
    /// the connection may take it.
    pub(super) fn transmission(&mut self, c: &mut Conn, held: &mut Held) -> bool {
        if c.incoming.is_some() {
            c.feed_incoming();
            let Some(inc) = c.incoming.take_if(|i| i.have == i.buf.len()) else {
                return false;
            };
            self.dispatch(c, inc.req, inc.buf);
            return true;
        }
        if !self.may_take(c, *held) {
            return false;
        }
        match Request::parse(c.input()) {
            Ok(Parse::Partial { .. }) => false,
            Err(e) => {
                self.log(&format!("{}: closing: {e}", c.peer));
                c.dead = true;
                false
            }
            Ok(Parse::Complete(req)) => {
                c.consume(sheepdog_core::nbd::request::REQUEST_LEN);
                let n = req.payload_len();
                if n > 0 {
                    held.total += n;
                    c.incoming = Some(Incoming {
                        req,
                        buf: vec![0u8; n],
                        have: 0,
                    });
                    return true;
                }
                if req.command == Command::Read {
                    // Its buffer is allocated now: count it before the
                    // next request is looked at.
                    held.total += req.len as usize;
                }
                self.dispatch(c, req, Vec::new());
                true
            }
        }
    }

    /// Carry out a request, or reply to it at once.
    fn dispatch(&mut self, c: &mut Conn, req: Request, buf: Vec<u8>) {
        let Phase::Transmission {
            export,
            neg,
            limits,
            object_size,
        } = &c.phase
        else {
            c.dead = true;
            return;
        };
        let (neg, limits, object_size) = (*neg, *limits, *object_size);
        if let Err(errno) = req.check(&limits) {
            let msg = format!(
                "{} {}+{}: {}",
                req.command.name(),
                req.offset,
                req.len,
                match errno {
                    Errno::Perm => "the export is read-only",
                    Errno::Overflow => "longer than 32 MiB",
                    _ => "invalid (out of range, or a flag or command not offered)",
                }
            );
            self.log(&format!("{}: {export}: {msg} ({errno})", c.peer));
            reply::answer(&mut c.out, &neg, &req, Err((errno, &msg)));
            return;
        }
        let Some(e) = self.exports.get_mut(export.as_str()) else {
            c.dead = true;
            return;
        };
        match req.command {
            Command::Disc => c.closing = true,
            Command::BlockStatus => {
                let req_one = req.flags & cmd_flags::REQ_ONE != 0;
                let extents = if req.len == 0 {
                    Vec::new()
                } else {
                    status::extents(
                        req.offset,
                        req.len,
                        limits.size,
                        object_size,
                        req_one,
                        |i| e.allocated(i),
                    )
                };
                let result = if extents.is_empty() {
                    Err((Errno::Inval, "empty block status request"))
                } else {
                    Ok(reply::Payload::Status(&extents))
                };
                reply::answer(&mut c.out, &neg, &req, result);
            }
            _ if !matches!(e.state, State::Open(_)) => {
                let msg = "the export's gateway connection failed";
                reply::answer(&mut c.out, &neg, &req, Err((Errno::Io, msg)));
                c.closing = true;
            }
            _ => {
                c.inflight += 1;
                if matches!(req.command, Command::Read | Command::Write) {
                    c.held += req.len as usize;
                }
                e.start(c.id, req, buf);
            }
        }
    }

    /// Run every export's engine and route what finished to its client.
    pub(super) fn pump_exports(&mut self) {
        let quiet = self.cfg.quiet;
        for e in self.exports.values_mut() {
            if matches!(e.state, State::Failed(_) | State::Closed) {
                continue;
            }
            if let Err(err) = e.pump() {
                eprintln!("nbd: {}: {err}", e.name);
                e.fail_all(err);
            }
            for mut p in e.take_finished() {
                let Some(c) = self.conns.get_mut(&p.conn) else {
                    continue;
                };
                c.inflight = c.inflight.saturating_sub(1);
                if matches!(p.req.command, Command::Read | Command::Write) {
                    c.held = c.held.saturating_sub(p.req.len as usize);
                }
                let Phase::Transmission { neg, .. } = &c.phase else {
                    continue;
                };
                let r = &p.req;
                let result = match &p.error {
                    Some((errno, msg)) => {
                        if !quiet {
                            eprintln!(
                                "nbd: {}: {} {} {}+{}: {msg} ({errno})",
                                c.peer,
                                e.name,
                                r.command.name(),
                                r.offset,
                                r.len
                            );
                        }
                        Err((*errno, msg.as_str()))
                    }
                    None if r.command == Command::Read => Ok(reply::Payload::Read {
                        data: std::rc::Rc::new(std::mem::take(&mut p.buf)),
                        holes: &mut p.holes,
                    }),
                    None => Ok(reply::Payload::None),
                };
                reply::answer(&mut c.out, neg, r, result);
            }
        }
    }
}
