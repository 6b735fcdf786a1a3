//! Finding a VDI by name, tag or snapshot id (PROTOCOL.md §9.1, §9.2):
//! `get_vdi_bitmap_range()` and `fill_vdi_info_range()` of sheep's vdi.c.

use sheepdog_core::hash::vid_hash;
use sheepdog_core::inode::{trim_nul, InodeHeader};
use sheepdog_core::oid::NR_VDIS;
use sheepdog_core::wire::ResultCode;

use super::cluster::Cluster;
use super::inode_io::read_lookup_header;

/// What is looked up.
#[derive(Clone, Copy, Debug)]
pub struct LookupKey<'a> {
    /// The name, without NUL padding.
    pub name: &'a [u8],
    /// The tag, without padding; `None` when the request carried only a
    /// name (256 bytes).
    pub tag: Option<&'a [u8]>,
    /// The snapshot id, 0 for none.
    pub snapid: u32,
}

impl LookupKey<'_> {
    /// `vdi_has_tag()`: whether a snapshot is asked for.
    fn has_selector(&self) -> bool {
        self.tag.is_some_and(|t| !t.is_empty()) || self.snapid != 0
    }

    /// `vdi_tag_match()`. A missing tag compares as empty (sheep would
    /// dereference NULL here; PROTOCOL.md §4.1).
    fn tag_matches(&self, inode: &InodeHeader) -> bool {
        let tag = self.tag.unwrap_or(b"");
        (inode.tag[0] != 0 && inode.tag() == tag) || self.snapid == inode.snap_id
    }
}

/// What a lookup found (`struct vdi_info`); filled in part even when the
/// lookup fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LookupInfo {
    /// The VID found (or the newest snapshot of a deleted working VDI).
    pub vid: u32,
    /// The next snap_id for that name (newest match + 1), 0 if none.
    pub snapid: u32,
    /// The found inode's create_time.
    pub create_time: u64,
    /// Where a new VDI of that name goes.
    pub free_bit: u32,
}

/// Split a name (+ tag) lookup payload of 256 or 512 bytes
/// (`vdi_init_tag()`); `None` for other lengths.
pub fn split_name_tag(payload: &[u8], data_length: u32) -> Option<(&[u8], Option<&[u8]>)> {
    let field = |from: usize| {
        let end = payload.len().min(from + 256);
        trim_nul(payload.get(from..end).unwrap_or(&[]))
    };
    match data_length {
        256 => Some((field(0), None)),
        512 => Some((field(0), Some(field(256)))),
        _ => None,
    }
}

impl Cluster {
    /// The lookup a VDI request names (its name and tag payload and its
    /// snapshot id), or the reply when the payload is malformed or nothing
    /// matches.
    pub(super) fn lookup_request(
        &self,
        req: &sheepdog_core::wire::Request,
        payload: &[u8],
    ) -> Result<LookupInfo, ResultCode> {
        let a = req.vdi().copied().unwrap_or_default();
        let (name, tag) =
            split_name_tag(payload, req.data_length).ok_or(ResultCode::InvalidParms)?;
        let key = LookupKey {
            name,
            tag,
            snapid: a.snapid,
        };
        match self.vdi_lookup(&key) {
            (ResultCode::Success, info) => Ok(info),
            (ret, _) => Err(ret),
        }
    }

    /// `vdi_lookup()`: the result and what was found.
    pub(super) fn vdi_lookup(&self, key: &LookupKey<'_>) -> (ResultCode, LookupInfo) {
        let mut info = LookupInfo::default();
        // get_vdi_bitmap_range()
        let left = vid_hash(key.name).max(1);
        let mut right = self.inuse.next_zero(left);
        info.free_bit = right;
        if left == right {
            return (ResultCode::NoVdi, info);
        }
        if right == NR_VDIS {
            right = self.inuse.next_zero(1);
            info.free_bit = right;
            if right == NR_VDIS {
                return (ResultCode::FullVdi, info);
            }
        }
        // fill_vdi_info()
        let ret = if left < right {
            self.fill_range(left, right, key, &mut info)
        } else {
            let first = if 1 < right {
                self.fill_range(1, right, key, &mut info)
            } else {
                ResultCode::NoVdi
            };
            match first {
                ResultCode::NoVdi | ResultCode::NoTag => {
                    self.fill_range(left, NR_VDIS, key, &mut info)
                }
                other => other,
            }
        };
        (ret, info)
    }

    /// `fill_vdi_info_range()`: newest (highest VID) first.
    fn fill_range(
        &self,
        left: u32,
        right: u32,
        key: &LookupKey<'_>,
        info: &mut LookupInfo,
    ) -> ResultCode {
        let mut vdi_found = false;
        let mut i = right;
        while i > left.max(1) {
            i -= 1;
            if !self.inuse.get(i) && !self.deleted.get(i) {
                continue;
            }
            let inode = match read_lookup_header(&*self.store, i) {
                Ok(Some(h)) => h,
                Ok(None) => return ResultCode::NoObj,
                Err(e) => return e,
            };
            if inode.name() != key.name {
                continue;
            }
            if key.has_selector() {
                if !inode.is_snapshot() {
                    vdi_found = true;
                    info.vid = inode.vdi_id;
                    continue;
                }
                if !key.tag_matches(&inode) {
                    continue;
                }
            } else {
                info.snapid = inode.snap_id.wrapping_add(1);
                if inode.is_snapshot() {
                    // The working VDI was deleted.
                    info.vid = inode.vdi_id;
                    break;
                }
            }
            info.create_time = inode.create_time;
            info.vid = inode.vdi_id;
            return ResultCode::Success;
        }
        if vdi_found {
            ResultCode::NoTag
        } else {
            ResultCode::NoVdi
        }
    }
}
