//! The pipeline import and export share: buffers of the reads and writes
//! in flight, one slot per request, each as large as a chunk, and the loop
//! that runs a transfer ([`run`] over a [`Side`]). A slot carries the token
//! of the operation using it; a write gives its slot back as soon as its
//! data is on the cluster, while its index entries are still on their way.

use sheepdog_core::engine::{Event, Token};

use std::fs::File;

use super::progress::Progress;
use crate::cluster::client::{Buffers, Client};
use crate::error::CliError;

/// A chunk's buffer and where it belongs in the VDI.
pub struct Slot {
    /// The bytes (allocated on first use).
    pub buf: Vec<u8>,
    /// Where the valid bytes start in `buf` (a write may skip leading
    /// zeros without moving the data).
    pub start: usize,
    /// Valid bytes.
    pub len: usize,
    /// Offset in the VDI.
    pub offset: u64,
    /// In flight.
    pub busy: bool,
    /// Read complete, waiting to be written out in order.
    pub ready: bool,
    /// The operation using the slot.
    pub token: Token,
    /// The data is not in `buf` but in the source file, at `offset`.
    pub in_file: bool,
}

/// The slots, indexed by token.
pub struct Slots {
    /// All slots.
    pub slots: Vec<Slot>,
    chunk: usize,
    /// The input file of slots whose data stays in it.
    pub source: Option<File>,
}

impl Slots {
    /// `n` slots of `chunk` bytes each.
    pub fn new(n: usize, chunk: usize) -> Slots {
        let slots = (0..n)
            .map(|_| Slot {
                buf: Vec::new(),
                start: 0,
                len: 0,
                offset: 0,
                busy: false,
                ready: false,
                token: Token::MAX,
                in_file: false,
            })
            .collect();
        Slots {
            slots,
            chunk,
            source: None,
        }
    }

    /// A slot that is neither in flight nor waiting, with its buffer sized.
    pub fn free(&mut self) -> Option<usize> {
        let i = self.slots.iter().position(|s| !s.busy && !s.ready)?;
        if self.slots[i].buf.len() < self.chunk {
            self.slots[i].buf = vec![0u8; self.chunk];
        }
        Some(i)
    }
}

impl Slots {
    /// The slot of operation `token`, if it still holds one.
    pub fn of(&mut self, token: Token) -> Option<&mut Slot> {
        self.slots.iter_mut().find(|s| s.busy && s.token == token)
    }
}

impl Buffers for Slots {
    fn data(&self, token: Token) -> &[u8] {
        match self.slots.iter().find(|s| s.busy && s.token == token) {
            // A discard may span more than the buffer; it sends no data.
            Some(s) => {
                let end = (s.start + s.len).min(s.buf.len());
                &s.buf[s.start.min(end)..end]
            }
            None => &[],
        }
    }

    fn file_data(&self, token: Token) -> Option<(&File, u64)> {
        let s = self.slots.iter().find(|s| s.busy && s.token == token)?;
        match (&self.source, s.in_file) {
            (Some(f), true) => Some((f, s.offset)),
            _ => None,
        }
    }

    fn data_mut(&mut self, token: Token) -> &mut [u8] {
        match self.of(token) {
            Some(s) => &mut s.buf[..s.len],
            None => &mut [],
        }
    }
}

/// One direction of a transfer, run by [`run`]: what goes into free
/// slots, what is written out as it becomes ready, and what each event of
/// a slot's operation does.
pub trait Side {
    /// Submit operations into free slots, as many as there is room for.
    /// An error stops submitting; what is in flight drains first.
    fn submit(
        &mut self,
        client: &mut Client,
        slots: &mut Slots,
        progress: &mut Progress,
    ) -> Result<(), CliError>;
    /// Nothing is left to submit.
    fn exhausted(&self) -> bool;
    /// Write out what is ready; an error stops the transfer.
    fn flush(&mut self, _slots: &mut Slots, _progress: &mut Progress) -> Result<(), CliError> {
        Ok(())
    }
    /// Something is still to be written out.
    fn backlog(&self) -> bool {
        false
    }
    /// Operations submitted and not yet Done.
    fn open(&self, slots: &Slots) -> usize;
    /// An event of an operation; an error stops the transfer.
    fn event(
        &mut self,
        ev: Event,
        slots: &mut Slots,
        progress: &mut Progress,
    ) -> Result<(), CliError>;
}

/// Run a transfer to its end: submit, write out, wait, hand events over,
/// until everything is done or, after the first failure, everything in
/// flight has drained; then the first failure, if any.
pub fn run(
    client: &mut Client,
    slots: &mut Slots,
    progress: &mut Progress,
    side: &mut dyn Side,
) -> Result<(), CliError> {
    let mut failure: Option<CliError> = None;
    let mut events = Vec::new();
    loop {
        if failure.is_none() {
            if let Err(e) = side.submit(client, slots, progress) {
                failure = Some(e);
            }
        }
        if failure.is_none() {
            if let Err(e) = side.flush(slots, progress) {
                failure = Some(e);
            }
        }
        if side.open(slots) == 0 {
            if failure.is_some() || (side.exhausted() && !side.backlog()) {
                break;
            }
            // Nothing in flight, but more to submit or write out.
            continue;
        }
        if let Err(e) = client.step(slots, &mut events) {
            // The connection is gone for good; a failure before it is the
            // one to report.
            failure.get_or_insert(e);
            break;
        }
        if events.is_empty() && client.engine.is_idle() {
            // Operations counted as open that the engine does not have:
            // never spin on that.
            failure.get_or_insert(CliError::msg(
                "internal error: the transfer waits for operations the engine does not have",
            ));
            break;
        }
        for ev in events.drain(..) {
            if let Err(e) = side.event(ev, slots, progress) {
                failure.get_or_insert(e);
            }
        }
    }
    progress.finish();
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
