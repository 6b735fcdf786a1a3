//! A view over the 2 MiB VDI bitmaps of READ_VDIS and READ_DEL_VDIS
//! (PROTOCOL.md §9.1): bit n is `byte[n >> 3] >> (n & 7) & 1`.

use crate::error::DecodeError;
use crate::oid::NR_VDIS;
use crate::wire::VDI_BITMAP_LEN;

/// A 2^24-bit bitmap of VIDs in a caller's buffer.
#[derive(Debug, Clone, Copy)]
pub struct VdiBitmap<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VdiBitmap<T> {
    /// Wrap a buffer of exactly 2 MiB.
    pub fn new_checked(buffer: T) -> Result<VdiBitmap<T>, DecodeError> {
        let got = buffer.as_ref().len();
        if got != VDI_BITMAP_LEN {
            return Err(DecodeError::BadLength {
                what: "VDI bitmap",
                expected: VDI_BITMAP_LEN,
                got,
            });
        }
        Ok(VdiBitmap { buffer })
    }

    /// The bitmap's bytes, as READ_VDIS carries them.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Whether `vid` is set; false for values past 2^24.
    pub fn contains(&self, vid: u32) -> bool {
        if vid >= NR_VDIS {
            return false;
        }
        self.buffer.as_ref()[(vid >> 3) as usize] >> (vid & 7) & 1 == 1
    }

    /// Every set VID in ascending order (whole zero bytes are skipped).
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.buffer
            .as_ref()
            .iter()
            .enumerate()
            .filter(|(_, &b)| b != 0)
            .flat_map(|(i, &b)| {
                (0..8u32)
                    .filter(move |bit| b >> bit & 1 == 1)
                    .map(move |bit| ((i as u32) << 3) | bit)
            })
    }

    /// Where a new VDI whose name hashes to `hash` goes without RECYCLE_VID:
    /// the first clear bit at or after the hash (0 counts as 1), wrapping
    /// round from 1; `None` when every VID is taken.
    pub fn next_free(&self, hash: u32) -> Option<u32> {
        let start = (hash % NR_VDIS).max(1);
        (start..NR_VDIS)
            .chain(1..start)
            .find(|&vid| !self.contains(vid))
    }

    /// The run of set bits that starts at `hash` (0 counts as 1) and ends
    /// before the first clear bit: where the server looks a name up, newest
    /// last. Returns `left..right`; `right` may wrap below `left`.
    pub fn probe_run(&self, hash: u32) -> (u32, Option<u32>) {
        let left = (hash % NR_VDIS).max(1);
        (left, self.next_free(left))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VdiBitmap<T> {
    /// Set `vid`; values past 2^24 are ignored.
    pub fn insert(&mut self, vid: u32) {
        if vid < NR_VDIS {
            self.buffer.as_mut()[(vid >> 3) as usize] |= 1 << (vid & 7);
        }
    }
}
