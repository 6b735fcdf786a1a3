//! Resolve a VDI or snapshot to its VID without reading its inode
//! (GET_VDI_INFO, PROTOCOL.md §9.2): what a check of a VDI whose inode
//! is broken, or an unlock, needs. [`Lookup`] is the conversation of an
//! [`Exchange`](crate::reply::Exchange) whose buffer is the 512-byte
//! name and tag ([`Lookup::payload`] fills it); its outcome is the VID.

use crate::address::Snapshot;
use crate::oid::NR_VDIS;
use crate::reply::{Accept, Conversation, Next, Problem};
use crate::wire::{Request, Response, NAME_LEN, NAME_TAG_LEN, TAG_LEN};

/// GET_VDI_INFO by name and snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lookup {
    snapid: u32,
    vid: u32,
}

/// Why a name cannot be looked up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameTooLong;

impl core::fmt::Display for NameTooLong {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("VDI names and tags are at most 255 bytes")
    }
}

impl Lookup {
    /// Look up `name` at `snapshot` (none: the working VDI); `payload`
    /// (512 bytes) is filled with the name and tag to send.
    pub fn payload(
        name: &[u8],
        snapshot: Option<Snapshot<'_>>,
        payload: &mut [u8; NAME_TAG_LEN],
    ) -> Result<Lookup, NameTooLong> {
        payload.fill(0);
        if name.len() >= NAME_LEN {
            return Err(NameTooLong);
        }
        payload[..name.len()].copy_from_slice(name);
        let snapid = match snapshot {
            None => 0,
            Some(Snapshot::Id(id)) => id,
            Some(Snapshot::Tag(tag)) => {
                if tag.len() >= TAG_LEN {
                    return Err(NameTooLong);
                }
                payload[NAME_LEN..NAME_LEN + tag.len()].copy_from_slice(tag.as_bytes());
                0
            }
        };
        Ok(Lookup { snapid, vid: 0 })
    }
}

impl Conversation for Lookup {
    type Outcome<'a> = u32;

    fn request(&self, id: u32, _buf_len: u32) -> Request {
        Request::get_vdi_info(id, self.snapid)
    }

    fn accept(&mut self, _req: &Request, rsp: &Response) -> Result<Accept, Problem> {
        let vid = rsp.vdi_id().unwrap_or(0);
        if vid == 0 || vid >= NR_VDIS {
            return Err(Problem::Vid { got: vid });
        }
        self.vid = vid;
        Ok(Accept::Skip(Next::Done))
    }

    fn outcome(&self, _buf: &[u8]) -> Result<u32, Problem> {
        Ok(self.vid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_goes_after_the_name() {
        let mut p = [0u8; NAME_TAG_LEN];
        let l = Lookup::payload(b"vm1", Some(Snapshot::Tag("before")), &mut p).unwrap();
        assert_eq!(&p[..4], b"vm1\0");
        assert_eq!(&p[256..262], b"before");
        assert_eq!(l.request(1, 512).data_length, 512);
        let l = Lookup::payload(b"vm1", Some(Snapshot::Id(3)), &mut p).unwrap();
        assert_eq!(l.request(1, 512).vdi().unwrap().snapid, 3);
        assert!(Lookup::payload(&[b'a'; 256], None, &mut p).is_err());
    }
}
