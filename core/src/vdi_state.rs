//! The cluster's table of VDI states (GET_VDI_COPIES 0xAB, internal,
//! PROTOCOL.md §4.2, §9.8): per VID its copies and policy, whether it is
//! a snapshot or deleted, its parent, and its lock: who holds it, or which
//! gateways share it and in what state. What `dog vdi lock list` prints.
//!
//! [`GetVdiCopies`] is the conversation of an
//! [`Exchange`](crate::reply::Exchange); sheep answers BUFFER_SMALL when
//! its table does not fit, and the caller asks again with a larger buffer
//! (`refused_with(ResultCode::BufferSmall)`). Entries are 1,428 bytes
//! (`struct vdi_state`); a reply that is not a whole number of them is not
//! believed.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use byteorder::{ByteOrder, LittleEndian};

use crate::reply::{Accept, Conversation, Problem};
use crate::wire::{Request, Response};

/// Bytes of one `struct vdi_state` in sheep 1.0.
pub const ENTRY_LEN: usize = 1428;
/// Gateways that can share a lock (`SD_MAX_COPIES`).
pub const MAX_PARTICIPANTS: usize = 31;
/// The buffer dog offers first: 512 entries.
pub const FIRST_BUF_LEN: usize = 512 * ENTRY_LEN;

const NR_COPIES: usize = 4;
const SNAPSHOT: usize = 5;
const DELETED: usize = 6;
const COPY_POLICY: usize = 7;
const BLOCK_SIZE_SHIFT: usize = 8;
const PARENT_VID: usize = 12;
const LOCK_STATE: usize = 16;
const LOCK_OWNER: usize = 20;
const NR_PARTICIPANTS: usize = 60;
const PARTICIPANTS_STATE: usize = 64;
const PARTICIPANTS: usize = PARTICIPANTS_STATE + 4 * MAX_PARTICIPANTS;
/// `struct node_id`: addr[16], port, io_addr[16], io_port, pad[4].
const NODE_ID_LEN: usize = 40;

/// A VDI's lock (`enum lock_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockState {
    /// Nobody holds it (1).
    Unlocked,
    /// One gateway holds it exclusively (2).
    Locked,
    /// Gateways share it (3, iSCSI multipath).
    Shared,
    /// A value sheep does not define.
    Unknown(u32),
}

impl LockState {
    fn from_u32(v: u32) -> LockState {
        match v {
            1 => LockState::Unlocked,
            2 => LockState::Locked,
            3 => LockState::Shared,
            other => LockState::Unknown(other),
        }
    }
}

/// A participant's state in a shared lock (`enum shared_lock_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sharing {
    /// It wrote index entries (1).
    Modified,
    /// It reads a valid inode (2).
    Shared,
    /// Another participant wrote: it must re-read the inode (3).
    Invalidated,
    /// A value sheep does not define.
    Unknown(u32),
}

impl Sharing {
    /// How dog prints it.
    pub fn name(self) -> &'static str {
        match self {
            Sharing::Modified => "modified",
            Sharing::Shared => "shared",
            Sharing::Invalidated => "invalidated",
            Sharing::Unknown(_) => "unknown",
        }
    }
}

/// One entry of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VdiState<'a> {
    bytes: &'a [u8],
}

impl<'a> VdiState<'a> {
    fn u32_at(&self, at: usize) -> u32 {
        LittleEndian::read_u32(&self.bytes[at..at + 4])
    }

    /// The VID.
    pub fn vid(&self) -> u32 {
        self.u32_at(0)
    }

    /// Copies (d + p for an erasure-coded VDI).
    pub fn nr_copies(&self) -> u8 {
        self.bytes[NR_COPIES]
    }

    /// Whether it is a snapshot.
    pub fn snapshot(&self) -> bool {
        self.bytes[SNAPSHOT] != 0
    }

    /// Whether it was deleted.
    pub fn deleted(&self) -> bool {
        self.bytes[DELETED] != 0
    }

    /// 0 replication, else the erasure-code byte.
    pub fn copy_policy(&self) -> u8 {
        self.bytes[COPY_POLICY]
    }

    /// log2 of its object size.
    pub fn block_size_shift(&self) -> u8 {
        self.bytes[BLOCK_SIZE_SHIFT]
    }

    /// Its parent's VID (0 for none).
    pub fn parent_vid(&self) -> u32 {
        self.u32_at(PARENT_VID)
    }

    /// Its lock.
    pub fn lock_state(&self) -> LockState {
        LockState::from_u32(self.u32_at(LOCK_STATE))
    }

    /// The gateway that holds a normal lock.
    pub fn lock_owner(&self) -> SocketAddr {
        node_id(&self.bytes[LOCK_OWNER..LOCK_OWNER + NODE_ID_LEN])
    }

    /// The gateways sharing the lock, with their states (at most
    /// [`MAX_PARTICIPANTS`], whatever the entry claims).
    pub fn participants(&self) -> impl Iterator<Item = (SocketAddr, Sharing)> + 'a {
        let bytes = self.bytes;
        let n = (LittleEndian::read_u32(&bytes[NR_PARTICIPANTS..NR_PARTICIPANTS + 4]) as usize)
            .min(MAX_PARTICIPANTS);
        (0..n).map(move |i| {
            let state = LittleEndian::read_u32(&bytes[PARTICIPANTS_STATE + 4 * i..][..4]);
            let at = PARTICIPANTS + NODE_ID_LEN * i;
            (
                node_id(&bytes[at..at + NODE_ID_LEN]),
                match state {
                    1 => Sharing::Modified,
                    2 => Sharing::Shared,
                    3 => Sharing::Invalidated,
                    other => Sharing::Unknown(other),
                },
            )
        })
    }
}

/// A `struct node_id`'s address and port.
fn node_id(b: &[u8]) -> SocketAddr {
    let mut addr = [0u8; 16];
    addr.copy_from_slice(&b[..16]);
    let port = LittleEndian::read_u16(&b[16..18]);
    let ip = if addr[..12].iter().all(|&x| x == 0) {
        IpAddr::V4(Ipv4Addr::new(addr[12], addr[13], addr[14], addr[15]))
    } else {
        IpAddr::V6(Ipv6Addr::from(addr))
    };
    SocketAddr::new(ip, port)
}

/// The entries of a checked reply.
#[derive(Clone, Debug)]
pub struct VdiStates<'a>(core::slice::ChunksExact<'a, u8>);

impl<'a> VdiStates<'a> {
    /// The entries of `payload`, which must be a whole number of them.
    pub fn parse(payload: &'a [u8]) -> Result<VdiStates<'a>, Problem> {
        if payload.len() % ENTRY_LEN != 0 {
            return Err(Problem::Length {
                got: payload.len() as u32,
                expected: (payload.len() / ENTRY_LEN * ENTRY_LEN) as u32,
            });
        }
        Ok(VdiStates(payload.chunks_exact(ENTRY_LEN)))
    }
}

impl<'a> Iterator for VdiStates<'a> {
    type Item = VdiState<'a>;

    fn next(&mut self) -> Option<VdiState<'a>> {
        self.0.next().map(|bytes| VdiState { bytes })
    }
}

/// GET_VDI_COPIES as an [`Exchange`](crate::reply::Exchange)'s
/// conversation; see the module docs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GetVdiCopies {
    len: u32,
}

impl Conversation for GetVdiCopies {
    type Outcome<'a> = VdiStates<'a>;

    fn request(&self, id: u32, buf_len: u32) -> Request {
        Request::get_vdi_copies(id, buf_len)
    }

    fn accept(&mut self, _req: &Request, rsp: &Response) -> Result<Accept, Problem> {
        let len = rsp.data_length;
        if len as usize % ENTRY_LEN != 0 {
            return Err(Problem::Length {
                got: len,
                expected: len / ENTRY_LEN as u32 * ENTRY_LEN as u32,
            });
        }
        self.len = len;
        Ok(Accept::Payload(0..len as usize))
    }

    fn outcome<'a>(&self, buf: &'a [u8]) -> Result<VdiStates<'a>, Problem> {
        VdiStates::parse(buf.get(..self.len as usize).unwrap_or_default())
    }
}

/// RELEASE_VDI of a lock whoever holds it, as `dog vdi lock unlock`
/// does, as an [`Exchange`](crate::reply::Exchange)'s conversation (no
/// buffer). sheep checks no owner and always answers SUCCESS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unlock {
    /// The VID whose lock goes.
    pub vid: u32,
    /// The lock's kind, as the table says it is held.
    pub shared: bool,
}

impl Conversation for Unlock {
    type Outcome<'a> = ();

    fn request(&self, id: u32, _buf_len: u32) -> Request {
        let kind = if self.shared {
            crate::wire::LockType::Shared
        } else {
            crate::wire::LockType::Normal
        };
        Request::release_vdi(id, self.vid, kind)
    }

    fn accept(&mut self, _req: &Request, _rsp: &Response) -> Result<Accept, Problem> {
        Ok(Accept::Skip(crate::reply::Next::Done))
    }

    fn outcome(&self, _buf: &[u8]) -> Result<(), Problem> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_entry_names_its_owner() {
        let mut e = [0u8; ENTRY_LEN];
        e[..4].copy_from_slice(&0x0061_2398u32.to_le_bytes());
        e[NR_COPIES] = 3;
        e[LOCK_STATE..LOCK_STATE + 4].copy_from_slice(&2u32.to_le_bytes());
        e[LOCK_OWNER + 12..LOCK_OWNER + 16].copy_from_slice(&[127, 0, 0, 1]);
        e[LOCK_OWNER + 16..LOCK_OWNER + 18].copy_from_slice(&7001u16.to_le_bytes());
        let mut states = VdiStates::parse(&e).unwrap();
        let s = states.next().unwrap();
        assert_eq!((s.vid(), s.nr_copies()), (0x61_2398, 3));
        assert_eq!(s.lock_state(), LockState::Locked);
        assert_eq!(s.lock_owner(), "127.0.0.1:7001".parse().unwrap());
        assert!(states.next().is_none());
    }

    #[test]
    fn shared_participants_are_bounded() {
        let mut e = [0u8; ENTRY_LEN];
        e[LOCK_STATE..LOCK_STATE + 4].copy_from_slice(&3u32.to_le_bytes());
        e[NR_PARTICIPANTS..NR_PARTICIPANTS + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        e[PARTICIPANTS_STATE..PARTICIPANTS_STATE + 4].copy_from_slice(&3u32.to_le_bytes());
        let s = VdiStates::parse(&e).unwrap().next().unwrap();
        assert_eq!(s.participants().count(), MAX_PARTICIPANTS);
        assert_eq!(s.participants().next().unwrap().1, Sharing::Invalidated);
    }

    #[test]
    fn a_torn_table_is_refused() {
        assert!(VdiStates::parse(&[0u8; ENTRY_LEN + 1]).is_err());
    }
}
