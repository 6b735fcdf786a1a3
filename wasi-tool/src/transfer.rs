//! Buffers of the reads and writes in flight during import and export:
//! one slot per request, each as large as a chunk. A slot carries the token
//! of the operation using it; a write gives its slot back as soon as its
//! data is on the cluster, while its index entries are still on their way.

use sheepdog_core::engine::Token;

use std::fs::File;

use crate::client::Buffers;

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

    /// Whether any slot is in flight.
    pub fn any_busy(&self) -> bool {
        self.slots.iter().any(|s| s.busy)
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
