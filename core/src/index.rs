//! Views over the flat index `data_vdi_id[]` held in a caller's buffer,
//! starting at any entry (PROTOCOL.md §8).

use byteorder::{ByteOrder, LittleEndian};

use crate::inode::INDEX_ENTRY_LEN;

/// Index entries `first..first + len` of a VDI as little-endian u32 in
/// a caller's buffer. Entry value 0 means unallocated, otherwise it is the
/// VID that owns the data object.
#[derive(Debug, Clone, Copy)]
pub struct IndexView<T: AsRef<[u8]>> {
    buffer: T,
    first: u32,
}

impl<T: AsRef<[u8]>> IndexView<T> {
    /// A view whose first entry is index `first`. Trailing bytes that do not
    /// make a whole entry are ignored.
    pub fn new(buffer: T, first: u32) -> IndexView<T> {
        IndexView { buffer, first }
    }

    /// The first index held.
    pub fn first(&self) -> u32 {
        self.first
    }

    /// How many entries are held.
    pub fn len(&self) -> u32 {
        let n = self.buffer.as_ref().len() / INDEX_ENTRY_LEN as usize;
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn slot(&self, idx: u32) -> Option<usize> {
        let rel = idx.checked_sub(self.first)?;
        if rel < self.len() {
            Some(rel as usize * INDEX_ENTRY_LEN as usize)
        } else {
            None
        }
    }

    /// Entry `idx`, `None` if the buffer does not hold it.
    pub fn get(&self, idx: u32) -> Option<u32> {
        let at = self.slot(idx)?;
        Some(LittleEndian::read_u32(&self.buffer.as_ref()[at..at + 4]))
    }

    /// The held entries in order, as `(idx, entry)`.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.buffer
            .as_ref()
            .chunks_exact(INDEX_ENTRY_LEN as usize)
            .enumerate()
            // A view that would run past index 2^32 - 1 stops there.
            .map_while(move |(i, c)| {
                let idx = u32::try_from(i)
                    .ok()
                    .and_then(|i| self.first.checked_add(i))?;
                Some((idx, LittleEndian::read_u32(c)))
            })
    }

    /// `dog vdi list`'s counts: entries owned by `vid` ("used") and other
    /// non-zero entries ("shared").
    pub fn usage(&self, vid: u32) -> (u32, u32) {
        let mut used = 0;
        let mut shared = 0;
        for (_, e) in self.iter() {
            if e == vid {
                used += 1;
            } else if e != 0 {
                shared += 1;
            }
        }
        (used, shared)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IndexView<T> {
    /// Set entry `idx`; returns false if the buffer does not hold it.
    pub fn set(&mut self, idx: u32, entry: u32) -> bool {
        match self.slot(idx) {
            Some(at) => {
                LittleEndian::write_u32(&mut self.buffer.as_mut()[at..at + 4], entry);
                true
            }
            None => false,
        }
    }
}

/// Encode entries as the payload of an index-run write (little-endian u32
/// each). Returns the bytes written, or `None` if `out` is too short.
pub fn encode_entries(entries: &[u32], out: &mut [u8]) -> Option<usize> {
    let len = entries.len() * INDEX_ENTRY_LEN as usize;
    let out = out.get_mut(..len)?;
    for (chunk, e) in out.chunks_exact_mut(4).zip(entries) {
        LittleEndian::write_u32(chunk, *e);
    }
    Some(len)
}
