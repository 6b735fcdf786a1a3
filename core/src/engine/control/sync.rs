//! Before a snapshot or a resize of the open VDI: look its name up again,
//! and if another client snapshotted it meanwhile, read the new working
//! VDI's header and adopt it (PROTOCOL.md §9.3, §9.5). The cached index
//! stays valid: the new working VDI started as a copy of ours, and nothing
//! was written since (the operation quiesces).

use super::super::{Engine, Error, Inline, Name, Target};
use super::{current, header_read, lookup, Next};
use crate::reply::check as reply;
use crate::wire::{Request, Response};

/// The step of the sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Sync {
    /// GET_VDI_INFO of the open VDI's name.
    Lookup,
    /// Its VID changed to this one: read that header.
    Header(u32),
}

impl<S: AsRef<[u8]> + AsMut<[u8]>, const N: usize> Engine<S, N> {
    pub(super) fn sync_request(&self, s: Sync, id: u32) -> Option<(Request, Inline)> {
        match s {
            Sync::Lookup => lookup(id, &self.volume.as_ref()?.name, &Name::new(), 0),
            Sync::Header(v) => header_read(id, v),
        }
    }

    /// The answer to sync step `s`: `None` when the open VDI is the working
    /// one (the operation goes on with its first step), else what comes
    /// next, with `s` moved on.
    pub(super) fn sync_advance(
        &mut self,
        s: &mut Sync,
        rsp: &Response,
        payload: &[u8],
    ) -> Option<Next> {
        let vid = match *s {
            Sync::Lookup => {
                let rsp_vid = rsp.vdi_id().unwrap_or(0);
                if rsp_vid == current(self.volume.as_ref()) {
                    return None;
                }
                *s = Sync::Header(rsp_vid);
                return Some(Next::Send);
            }
            Sync::Header(v) => v,
        };
        let shift = self
            .volume
            .as_ref()
            .map_or(0, |v| v.header.block_size_shift);
        let header = match reply::successor_header(payload, vid, shift) {
            Ok(h) => h,
            Err(p) => {
                let asked = self.asked_of_step(rsp, Target::Vdi(vid));
                return Some(Next::Fail(Error::BadReply(asked.bad(p))));
            }
        };
        if header.is_snapshot() {
            // Snapshotted again since the lookup: look again.
            *s = Sync::Lookup;
            return Some(Next::Resync);
        }
        if let Some(vol) = self.volume.as_mut() {
            vol.header = header;
            vol.header.vdi_id = vid;
        }
        None
    }
}
