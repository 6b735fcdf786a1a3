//! A few reads or writes in flight, each with a buffer of its own, for the
//! commands that go object by object in an order of their own (the diffs):
//! submit while there is room, and collect what finished.

use std::collections::HashMap;

use sheepdog_core::engine::{Event, Token};

use crate::cluster::client::{Buffers, Client};
use crate::error::{self, CliError};

/// An operation that finished: its token, its buffer and its outcome.
pub type Finished = (Token, Vec<u8>, Result<(), sheepdog_core::engine::Error>);

/// The operations in flight and their buffers, by token.
pub struct Pipe {
    bufs: HashMap<Token, Vec<u8>>,
    next: Token,
    depth: usize,
    events: Vec<Event>,
}

impl Buffers for Pipe {
    fn data(&self, token: Token) -> &[u8] {
        self.bufs.get(&token).map_or(&[], Vec::as_slice)
    }
    fn data_mut(&mut self, token: Token) -> &mut [u8] {
        self.bufs.get_mut(&token).map_or(&mut [], Vec::as_mut_slice)
    }
}

impl Pipe {
    /// Room for `depth` operations at once.
    pub fn new(depth: usize) -> Pipe {
        Pipe {
            bufs: HashMap::new(),
            next: 1,
            depth: depth.max(1),
            events: Vec::new(),
        }
    }

    /// Whether another operation may be submitted.
    pub fn has_room(&self) -> bool {
        self.bufs.len() < self.depth
    }

    /// Operations in flight.
    pub fn open(&self) -> usize {
        self.bufs.len()
    }

    /// Start an operation over `buf` with `start` (given the token);
    /// returns the token.
    pub fn submit(
        &mut self,
        client: &mut Client,
        buf: Vec<u8>,
        what: &str,
        start: impl FnOnce(&mut crate::cluster::Eng, Token) -> Result<(), sheepdog_core::engine::Error>,
    ) -> Result<Token, CliError> {
        let token = self.next;
        self.next += 1;
        self.bufs.insert(token, buf);
        if let Err(e) = start(&mut client.engine, token) {
            self.bufs.remove(&token);
            return Err(error::engine(what, e));
        }
        Ok(token)
    }

    /// Run until at least one operation finished; its token, buffer and
    /// outcome, for each one that did.
    pub fn wait(&mut self, client: &mut Client) -> Result<Vec<Finished>, CliError> {
        let mut done = Vec::new();
        while done.is_empty() {
            if self.bufs.is_empty() {
                return Ok(done);
            }
            let mut events = std::mem::take(&mut self.events);
            client.step(self, &mut events)?;
            for ev in events.drain(..) {
                match ev {
                    Event::Done { token, result } => {
                        if let Some(buf) = self.bufs.remove(&token) {
                            done.push((token, buf, result));
                        }
                    }
                    Event::Zeros(z) => {
                        if let Some(b) = self.bufs.get_mut(&z.token) {
                            let r = z.range.start as usize..(z.range.end as usize).min(b.len());
                            if r.start < r.end {
                                b[r].fill(0);
                            }
                        }
                    }
                    Event::DataDone { .. } | Event::Control(_) => {}
                }
            }
            self.events = events;
        }
        Ok(done)
    }
}
