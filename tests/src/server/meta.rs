//! Saving and loading the cluster's bookkeeping (VID bitmaps and VDI
//! states) through [`Store::save_meta`], so
//! that a directory store can be served again after a restart. Locks are
//! not saved (they are the gateway's memory).

use std::collections::BTreeMap;
use std::io;

use sheepdog_core::inode::InodeHeader;
use sheepdog_core::oid::OidKind;

use super::store::Store;
use super::vdi_state::{LockState, VdiState, VidBitmap};

const MAGIC: &[u8; 8] = b"SDREFMT1";
const STATE_LEN: usize = 16;

/// The saved parts of a cluster.
#[derive(Debug, Default)]
pub struct Meta {
    /// VIDs in use.
    pub inuse: VidBitmap,
    /// Deleted VIDs.
    pub deleted: VidBitmap,
    /// VDI states.
    pub vdis: BTreeMap<u32, VdiState>,
}

fn put_list(out: &mut Vec<u8>, map: &VidBitmap) {
    let vids: Vec<u32> = map.iter().collect();
    out.extend_from_slice(&(vids.len() as u32).to_le_bytes());
    for v in vids {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Encode bitmaps and states.
pub fn encode(inuse: &VidBitmap, deleted: &VidBitmap, vdis: &BTreeMap<u32, VdiState>) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    put_list(&mut out, inuse);
    put_list(&mut out, deleted);
    out.extend_from_slice(&(vdis.len() as u32).to_le_bytes());
    for (vid, s) in vdis {
        out.extend_from_slice(&vid.to_le_bytes());
        out.extend_from_slice(&[
            s.nr_copies,
            u8::from(s.snapshot),
            u8::from(s.deleted),
            s.copy_policy,
            s.block_size_shift,
            0,
            0,
            0,
        ]);
        out.extend_from_slice(&s.parent_vid.to_le_bytes());
    }
    out
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> io::Result<&[u8]> {
        if self.0.len() < n {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "truncated cluster.meta",
            ));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    fn u32(&mut self) -> io::Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn list(&mut self) -> io::Result<VidBitmap> {
        let n = self.u32()?;
        let mut map = VidBitmap::default();
        for _ in 0..n {
            map.set(self.u32()?);
        }
        Ok(map)
    }
}

/// Decode what [`encode`] wrote.
pub fn decode(bytes: &[u8]) -> io::Result<Meta> {
    let mut r = Reader(bytes);
    if r.take(MAGIC.len())? != MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a sheep-ref cluster.meta",
        ));
    }
    let inuse = r.list()?;
    let deleted = r.list()?;
    let n = r.u32()?;
    let mut vdis = BTreeMap::new();
    for _ in 0..n {
        let vid = r.u32()?;
        let b = r.take(STATE_LEN - 8)?.to_vec();
        let parent_vid = r.u32()?;
        vdis.insert(
            vid,
            VdiState {
                nr_copies: b[0],
                snapshot: b[1] != 0,
                deleted: b[2] != 0,
                copy_policy: b[3],
                block_size_shift: b[4],
                parent_vid,
                lock: LockState::Unlocked,
                owner: 0,
            },
        );
    }
    Ok(Meta {
        inuse,
        deleted,
        vdis,
    })
}

/// Rebuild the bookkeeping from the inodes in a store that has none saved:
/// every inode's VID is in use, tombstones count as deleted, and states
/// come from the headers (a VID is a snapshot if its `snap_ctime` is set).
/// DEL_VDIs that left their inode untouched cannot be seen this way.
pub fn rebuild(store: &dyn Store) -> io::Result<Meta> {
    let mut meta = Meta::default();
    for oid in store.list()? {
        if oid.kind() != OidKind::Inode {
            continue;
        }
        let mut bytes = [0u8; 572];
        if !store.read(oid, 0, &mut bytes)? {
            continue;
        }
        let Ok(h) = InodeHeader::parse(&bytes) else {
            continue;
        };
        let vid = oid.vid_bits();
        meta.inuse.set(vid);
        if h.is_deleted() {
            meta.deleted.set(vid);
        }
        meta.vdis.insert(
            vid,
            VdiState {
                nr_copies: h.nr_copies,
                snapshot: h.is_snapshot(),
                deleted: h.is_deleted(),
                copy_policy: h.copy_policy,
                block_size_shift: h.block_size_shift,
                parent_vid: h.parent_vdi_id,
                lock: LockState::Unlocked,
                owner: 0,
            },
        );
    }
    Ok(meta)
}
