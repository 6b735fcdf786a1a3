//! What the engine has in flight: each request, what it was for, and
//! where it stands (on the wire, or waiting for a retry's time or for the
//! new working VDI).

use super::dirty;
use super::plan::{self, WriteAction};
use crate::reply::Asked;
use crate::reply::Token;
use crate::wire::Response;

/// What a request in flight was for.
#[derive(Clone, Copy, Debug)]
pub(super) enum Sent {
    /// A piece of a read.
    Read { token: Token, piece: plan::Piece },
    /// A piece of a write, and what it was sent as.
    Write {
        token: Token,
        piece: plan::Piece,
        action: WriteAction,
    },
    /// A run of index entries, written to the inode of `vid`.
    IndexRun { key: u32, run: dirty::Run, vid: u32 },
    /// Reading a run of entries of `vid`'s inode before writing them.
    IndexCheck { key: u32, run: dirty::Run, vid: u32 },
    /// Before a run that clears entries: is `vid` still writable? So that a
    /// discard never clears a snapshot's entries.
    Precheck { key: u32, run: dirty::Run, vid: u32 },
    /// An object we created under an earlier VID of this VDI whose index
    /// entry did not reach the new working inode: copy it (CREATE with COW,
    /// no payload) into the new VID, whose entry is then written. Writing
    /// the old VID into the new inode would give one object two owners with
    /// one reference, and the cluster would free it under one of them.
    Rehome { key: u32, idx: u32, vid: u32 },
    /// After run `key` landed: is `vid` still writable? A snapshot marks the
    /// old VID read-only before it reads the inode it copies, so if a data
    /// write to `vid` is still accepted after our index write, the copy
    /// will include it. (`snap_ctime` is written last: reading it would
    /// miss a snapshot under way.)
    Verify { key: u32, vid: u32 },
    /// Before re-creating an object this engine released: is it gone yet?
    /// The cluster reclaims released objects asynchronously, and a reclaim
    /// that lands after a new CREATE of the same oid deletes the new data.
    Probe { token: Token, piece: plan::Piece },
    /// Looking the working VDI up again after READONLY.
    Resolve,
    /// The current step of the control operation.
    Control,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Inflight {
    pub(super) id: u32,
    pub(super) sent: Sent,
    pub(super) attempt: u8,
    /// On the wire, or waiting to go out.
    pub(super) due: Due,
    /// What the request on the wire asked, to judge its reply.
    pub(super) asked: Asked,
}

/// Where a request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Due {
    /// Sent on the current connection, its reply awaited.
    OnWire,
    /// To be sent (again) at this time.
    At(u64),
    /// To be sent once the working VDI has been looked up again.
    AfterResolve,
}

impl Due {
    /// Whether it is on the wire.
    pub(super) fn on_wire(self) -> bool {
        self == Due::OnWire
    }

    /// Whether it is to be sent by `now`.
    pub(super) fn ready(self, now: u64) -> bool {
        matches!(self, Due::At(t) if t <= now)
    }
}

impl Inflight {
    /// `sent`, to go out as `due` says (not on the wire yet).
    pub(super) fn queued(sent: Sent, attempt: u8, due: Due) -> Inflight {
        Inflight {
            id: 0,
            sent,
            attempt,
            due,
            asked: Asked::NONE,
        }
    }
}

/// The response whose header arrived and whose payload is being read.
#[derive(Clone, Copy, Debug)]
pub(super) struct Receiving {
    pub(super) flight: Inflight,
    pub(super) response: Response,
    pub(super) into_scratch: bool,
}
