//! What the cluster keeps per VID besides the inode (GET_VDI_COPIES,
//! `core::vdi_state`): copies, policy, and locks with their owners; the
//! bitmaps of VIDs in use and deleted (READ_VDIS, READ_DEL_VDIS); and a
//! VDI's VID by name without reading its inode (GET_VDI_INFO).

use std::net::SocketAddr;

use sheepdog_core::address::Snapshot;
use sheepdog_core::lookup::Lookup;
use sheepdog_core::read_vdis::ReadVdis;
use sheepdog_core::reply::Exchange;
use sheepdog_core::vdi_state::{GetVdiCopies, LockState, Sharing, Unlock, FIRST_BUF_LEN};
use sheepdog_core::wire::{ResultCode, NAME_TAG_LEN, VDI_BITMAP_LEN};

use super::client::Client;
use super::raw;
use crate::error::{self, CliError};

/// The largest GET_VDI_COPIES buffer: 2^24 VIDs' entries would not fit
/// anywhere; 64 Ki entries do.
const MAX_BUF_LEN: usize = FIRST_BUF_LEN << 7;

/// One VID's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    /// The VID.
    pub vid: u32,
    /// Copies (d + p when erasure-coded).
    pub nr_copies: u8,
    /// 0 replication, else the erasure-code byte.
    pub copy_policy: u8,
    /// log2 of its object size.
    pub block_size_shift: u8,
    /// A snapshot.
    pub snapshot: bool,
    /// Deleted.
    pub deleted: bool,
    /// Its parent.
    pub parent_vid: u32,
    /// Its lock.
    pub lock: LockState,
    /// The holder of a normal lock.
    pub owner: SocketAddr,
    /// The sharers of a shared lock.
    pub participants: Vec<(SocketAddr, Sharing)>,
}

/// Every VID's state, as the node `client` is connected to keeps them.
pub fn vdi_states(client: &mut Client) -> Result<Vec<State>, CliError> {
    let mut len = FIRST_BUF_LEN;
    loop {
        let mut ex = Exchange::new(vec![0u8; len], 1, GetVdiCopies::default());
        raw::on_client(client, &mut ex)?;
        if ex.refused_with(ResultCode::BufferSmall) && len < MAX_BUF_LEN {
            len *= 2;
            continue;
        }
        return match ex.outcome() {
            Some(Ok(states)) => Ok(states
                .map(|s| State {
                    vid: s.vid(),
                    nr_copies: s.nr_copies(),
                    copy_policy: s.copy_policy(),
                    block_size_shift: s.block_size_shift(),
                    snapshot: s.snapshot(),
                    deleted: s.deleted(),
                    parent_vid: s.parent_vid(),
                    lock: s.lock_state(),
                    owner: s.lock_owner(),
                    participants: s.participants().collect(),
                })
                .collect()),
            Some(Err(e)) => Err(error::engine("the VDI states", e)),
            None => Err(CliError::msg("internal error: no reply")),
        };
    }
}

/// The bitmap of VIDs in use (deleted ones included), or with `deleted`
/// of the VIDs deleted.
pub fn bitmap(client: &mut Client, deleted: bool) -> Result<Vec<u8>, CliError> {
    let mut ex = Exchange::new(vec![0u8; VDI_BITMAP_LEN], 1, ReadVdis { deleted });
    raw::on_client(client, &mut ex)?;
    match ex.outcome() {
        Some(Ok(_)) => Ok(ex.into_buf()),
        Some(Err(e)) => Err(error::engine("the VDI bitmap", e)),
        None => Err(CliError::msg("internal error: no reply")),
    }
}

/// The VID of `name` at `snapshot`; `None` when there is no such VDI or
/// snapshot.
pub fn lookup(
    client: &mut Client,
    name: &str,
    snapshot: Option<Snapshot<'_>>,
) -> Result<Option<u32>, CliError> {
    let mut payload = [0u8; NAME_TAG_LEN];
    let l = Lookup::payload(name.as_bytes(), snapshot, &mut payload)
        .map_err(|e| CliError::msg(format!("{name}: {e}")))?;
    let mut ex = Exchange::new(payload.to_vec(), 1, l);
    raw::on_client(client, &mut ex)?;
    if ex.refused_with(ResultCode::NoVdi) || ex.refused_with(ResultCode::NoTag) {
        return Ok(None);
    }
    match ex.outcome() {
        Some(Ok(vid)) => Ok(Some(vid)),
        Some(Err(e)) => Err(error::engine(name, e)),
        None => Err(CliError::msg("internal error: no reply")),
    }
}

/// Release the lock on `vid` (shared or not), whoever holds it.
pub fn unlock(client: &mut Client, vid: u32, shared: bool) -> Result<(), CliError> {
    let mut ex = Exchange::new(Vec::new(), 1, Unlock { vid, shared });
    raw::on_client(client, &mut ex)?;
    match ex.outcome() {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => Err(error::engine(&format!("VID {vid:x}"), e)),
        None => Err(CliError::msg("internal error: no reply")),
    }
}
