//! The objects a VDI or snapshot has, from its inode (PROTOCOL.md §8,
//! §7.5, §9.9): the inode itself, the data objects its index names
//! (objects shared with its parent included, as `dog vdi check` checks
//! them), a hyper volume's B-tree leaves and the data they name, and the
//! VM state a savevm snapshot keeps. An inode that cannot be read or
//! makes no sense is reported as broken, with the inode alone to check.

use sheepdog_core::btree::{self, indirect_entry, leaf_entries, Header};
use sheepdog_core::inode::{InodeHeader, HEADER_LEN, INDEX_OFFSET};
use sheepdog_core::object_op::ObjectKind;
use sheepdog_core::oid::{Oid, Vid};

use crate::cluster::client::Client;
use crate::cluster::raw;
use crate::error::CliError;

/// Bytes of a B-tree leaf.
const LEAF_LEN: usize = 4 << 20;

/// A VDI's objects and how they are stored.
#[derive(Clone, Debug)]
pub struct Volume {
    /// Its VID.
    pub vid: u32,
    /// How the user names it (`name`, `name@tag`, `name@id`).
    pub label: String,
    /// Its header, when the inode could be read and made sense.
    pub header: Option<InodeHeader>,
    /// Copies (d + p when erasure-coded).
    pub copies: u8,
    /// 0 replication, else the erasure-code byte.
    pub copy_policy: u8,
    /// Bytes of a data object.
    pub object_size: u32,
    /// Its objects, the inode first.
    pub objects: Vec<Oid>,
    /// Why its inode is broken, if it is.
    pub broken: Option<String>,
    /// The name its inode holds, read even when the rest is broken.
    pub name: Option<String>,
    /// Requests its inode and leaves took to read.
    pub reads: u32,
}

/// What is known of a VDI before its inode is read: from the cluster's
/// VDI states, so that a broken inode still has copies to check.
#[derive(Clone, Copy, Debug)]
pub struct Known {
    /// Its VID.
    pub vid: u32,
    /// Copies.
    pub copies: u8,
    /// Copy policy.
    pub copy_policy: u8,
    /// log2 of its object size.
    pub block_size_shift: u8,
}

fn read(client: &mut Client, oid: Oid, len: usize, offset: u32) -> Result<Vec<u8>, String> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let op = raw::object(client, vec![0u8; len], oid, ObjectKind::Read { offset })
        .map_err(|e| e.to_string())?;
    match op.outcome() {
        Some(Ok(())) => Ok(op.into_buf()),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("no reply".into()),
    }
}

/// Read the inode of `known.vid` and list the VDI's objects.
pub fn volume(client: &mut Client, known: Known, label: String) -> Result<Volume, CliError> {
    let vid =
        Vid::new(known.vid).map_err(|e| CliError::msg(format!("VID {:x}: {e}", known.vid)))?;
    let inode = Oid::inode(vid);
    let mut v = Volume {
        vid: known.vid,
        label,
        header: None,
        copies: known.copies,
        copy_policy: known.copy_policy,
        object_size: 1u32
            .checked_shl(known.block_size_shift.into())
            .unwrap_or(4 << 20),
        objects: vec![inode],
        broken: None,
        name: None,
        reads: 1,
    };
    let head = match read(client, inode, HEADER_LEN + btree::HEADER_LEN as usize, 0) {
        Ok(b) => b,
        Err(e) => {
            v.broken = Some(format!("its inode {inode} cannot be read: {e}"));
            return Ok(v);
        }
    };
    let name = sheepdog_core::inode::trim_nul(&head[..256]);
    v.name = (!name.is_empty()).then(|| String::from_utf8_lossy(name).into_owned());
    match objects(client, known.vid, &head, &mut v.reads) {
        Ok((h, objects)) => {
            v.copies = h.nr_copies;
            v.copy_policy = h.copy_policy;
            v.object_size = h.object_size().map(|s| s.bytes()).unwrap_or(v.object_size);
            v.header = Some(h);
            v.objects.extend(objects);
        }
        Err(why) => v.broken = Some(format!("its inode {inode} is broken: {why}")),
    }
    Ok(v)
}

/// The header in `head` (the inode's header and the 8 bytes after it)
/// and the objects it names besides the inode, its index read as far as
/// it goes.
fn objects(
    client: &mut Client,
    vid: u32,
    head: &[u8],
    reads: &mut u32,
) -> Result<(InodeHeader, Vec<Oid>), String> {
    let h = InodeHeader::parse(&head[..HEADER_LEN]).map_err(|e| e.to_string())?;
    let inode = Oid::inode(Vid::new(vid).map_err(|e| e.to_string())?);
    if h.vdi_id != vid {
        return Err(format!("it names VID {:x}", h.vdi_id));
    }
    let object_size = h.object_size().map_err(|e| e.to_string())?;
    if h.nr_copies == 0 {
        return Err("it has 0 copies".into());
    }
    let mut out = Vec::new();
    let data = |entry_vid: u32, idx: u32| -> Result<Oid, String> {
        Vid::new(entry_vid)
            .map(|v| Oid::data(v, idx))
            .map_err(|_| format!("index entry {idx} names VID {entry_vid:x}"))
    };
    if h.is_hyper() {
        let rh = Header::parse(&head[HEADER_LEN..], true).map_err(|e| e.to_string())?;
        let len = (rh.entries * rh.entry_len()) as usize;
        *reads += 1;
        let body = read(client, inode, len, INDEX_OFFSET + btree::HEADER_LEN)
            .map_err(|e| format!("its B-tree root cannot be read: {e}"))?;
        let body = &body[..];
        if rh.depth == 1 {
            for (idx, v) in leaf_entries(body).filter(|e| e.1 != 0) {
                out.push(data(v, idx)?);
            }
        } else if rh.depth == 2 {
            for e in body.chunks_exact(btree::INDIRECT_ENTRY_LEN as usize) {
                let (_, leaf) = indirect_entry(e, vid).map_err(|e| e.to_string())?;
                out.push(leaf);
                *reads += 1;
                let lb = read(client, leaf, LEAF_LEN, 0)
                    .map_err(|e| format!("its B-tree leaf {leaf} cannot be read: {e}"))?;
                let lh =
                    Header::parse(&lb, false).map_err(|e| format!("B-tree leaf {leaf}: {e}"))?;
                let n = (lh.entries * lh.entry_len()) as usize;
                let entries = lb
                    .get(btree::HEADER_LEN as usize..btree::HEADER_LEN as usize + n)
                    .ok_or("a B-tree leaf overruns its object")?;
                for (idx, v) in leaf_entries(entries).filter(|e| e.1 != 0) {
                    out.push(data(v, idx)?);
                }
            }
        }
    } else {
        let count = h.index_len().map_err(|e| e.to_string())? as usize;
        *reads += u32::from(count > 0);
        let index = read(client, inode, 4 * count, INDEX_OFFSET)
            .map_err(|e| format!("its index cannot be read: {e}"))?;
        for (idx, e) in index.chunks_exact(4).enumerate() {
            let v = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
            if v != 0 {
                out.push(data(v, idx as u32)?);
            }
        }
    }
    if !h.is_deleted() && h.vm_state_size > 0 {
        let n = h.vm_state_size.div_ceil(u64::from(object_size.bytes()));
        let own = Vid::new(vid).map_err(|e| e.to_string())?;
        out.extend((0..n as u32).map(|i| Oid::vmstate(own, i)));
    }
    Ok((h, out))
}
