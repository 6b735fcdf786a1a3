//! Before a snapshot or a resize of the open VDI: look its name up again,
//! and if another client snapshotted it meanwhile, read the new working
//! VDI's header and adopt it (PROTOCOL.md §9.3, §9.5). The cached index
//! stays valid: the new working VDI started as a copy of ours, and nothing
//! was written since (the operation quiesces).

use super::super::reply;
use super::super::{Engine, Error, Inline, Name, Problem, Target};
use super::{current, header_read, lookup};
use crate::wire::{Request, Response};

/// The step of the sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Sync {
    /// GET_VDI_INFO of the open VDI's name.
    Lookup,
    /// Its VID changed to this one: read that header.
    Header(u32),
}

/// What a sync step's answer leads to.
pub(super) enum Synced {
    /// Send the next sync step.
    Continue,
    /// Snapshotted again since the lookup: look again.
    Again,
    /// The open VDI is the working one: go on with the operation.
    Done,
}

impl<S: AsRef<[u8]> + AsMut<[u8]>, const N: usize> Engine<S, N> {
    pub(super) fn sync_request(&self, s: Sync, id: u32) -> Option<(Request, Inline)> {
        match s {
            Sync::Lookup => lookup(id, &self.volume.as_ref()?.name, &Name::new(), 0),
            Sync::Header(v) => header_read(id, v),
        }
    }

    pub(super) fn sync_advance(
        &mut self,
        s: &mut Sync,
        rsp: &Response,
        payload: &[u8],
    ) -> Result<Synced, Error> {
        let vid = match *s {
            Sync::Lookup => {
                let rsp_vid = rsp.vdi_id().unwrap_or(0);
                if rsp_vid == current(self.volume.as_ref()) {
                    return Ok(Synced::Done);
                }
                *s = Sync::Header(rsp_vid);
                return Ok(Synced::Continue);
            }
            Sync::Header(v) => v,
        };
        let bad = |e: &Self, p| Error::BadReply(e.asked_of_step(rsp, Target::Vdi(vid)).bad(p));
        let header = reply::inode_header(payload, vid).map_err(|p| bad(self, p))?;
        let shift = self.volume.as_ref().map(|v| v.header.block_size_shift);
        if header.is_hyper() || Some(header.block_size_shift) != shift {
            // The working VDI started as a copy of ours: it cannot have
            // another layout.
            let p = Problem::Field {
                name: "block_size_shift",
                got: header.block_size_shift.into(),
                expected: shift.unwrap_or(0).into(),
            };
            return Err(bad(self, p));
        }
        if header.is_snapshot() {
            *s = Sync::Lookup;
            return Ok(Synced::Again);
        }
        if let Some(vol) = self.volume.as_mut() {
            vol.header = header;
            vol.header.vdi_id = vid;
        }
        Ok(Synced::Done)
    }
}
