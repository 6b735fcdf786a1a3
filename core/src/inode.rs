//! The inode object (PROTOCOL.md §8): the 4664-byte header, where the index
//! lies, and the byte ranges a client writes so that it never rewrites more
//! of an inode than it must.

use byteorder::{ByteOrder, LittleEndian};

use crate::error::{DecodeError, SizeError};
use crate::object_size::{ObjectSize, MAX_DATA_OBJS};
use crate::wire::{NAME_LEN, TAG_LEN};

/// Size of the inode header (`offsetof(struct sd_inode, data_vdi_id)`).
pub const HEADER_LEN: usize = 4664;
/// Bytes of the header that hold fields (through `btree_counter`); the rest
/// is the retired `child_vdi_id` array.
pub const HEADER_FIELDS_LEN: usize = 572;
/// The bytes the server itself reads for name lookups.
pub const LOOKUP_LEN: usize = 568;
/// Offset of the flat index `data_vdi_id[2^20]`.
pub const INDEX_OFFSET: u32 = HEADER_LEN as u32;
/// Bytes per index entry.
pub const INDEX_ENTRY_LEN: u32 = 4;
/// Header plus index: what QEMU reads at open.
pub const HEADER_AND_INDEX_LEN: u32 = INDEX_OFFSET + INDEX_ENTRY_LEN * MAX_DATA_OBJS as u32;
/// The whole inode object, with the server's `gref` array.
pub const INODE_OBJECT_LEN: u32 = HEADER_AND_INDEX_LEN + 8 * MAX_DATA_OBJS as u32;

/// Byte offsets of the header fields.
pub mod field {
    /// `name[256]`.
    pub const NAME: usize = 0;
    /// `tag[256]`.
    pub const TAG: usize = 256;
    /// `create_time`, u64 (`sec << 32 | nsec`).
    pub const CREATE_TIME: usize = 512;
    /// `snap_ctime`, u64; non-zero for snapshots.
    pub const SNAP_CTIME: usize = 520;
    /// `vm_clock_nsec`, u64.
    pub const VM_CLOCK_NSEC: usize = 528;
    /// `vdi_size`, u64.
    pub const VDI_SIZE: usize = 536;
    /// `vm_state_size`, u64.
    pub const VM_STATE_SIZE: usize = 544;
    /// `copy_policy`, u8.
    pub const COPY_POLICY: usize = 552;
    /// `store_policy`, u8.
    pub const STORE_POLICY: usize = 553;
    /// `nr_copies`, u8.
    pub const NR_COPIES: usize = 554;
    /// `block_size_shift`, u8.
    pub const BLOCK_SIZE_SHIFT: usize = 555;
    /// `snap_id`, u32.
    pub const SNAP_ID: usize = 556;
    /// `vdi_id`, u32.
    pub const VDI_ID: usize = 560;
    /// `parent_vdi_id`, u32.
    pub const PARENT_VDI_ID: usize = 564;
    /// `btree_counter`, u32.
    pub const BTREE_COUNTER: usize = 568;
}

/// The inode header's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InodeHeader {
    /// NUL-padded name; all zeros for a deleted VDI.
    pub name: [u8; NAME_LEN],
    /// NUL-padded snapshot tag.
    pub tag: [u8; TAG_LEN],
    /// Creation time, `sec << 32 | nsec`.
    pub create_time: u64,
    /// Snapshot time; non-zero means this VDI is a snapshot.
    pub snap_ctime: u64,
    /// QEMU VM clock at savevm.
    pub vm_clock_nsec: u64,
    /// Virtual size in bytes.
    pub vdi_size: u64,
    /// Bytes of VM state saved with a snapshot.
    pub vm_state_size: u64,
    /// 0 replication, else the erasure-code byte.
    pub copy_policy: u8,
    /// 0 flat index, 1 hyper volume.
    pub store_policy: u8,
    /// Copies, or d+p.
    pub nr_copies: u8,
    /// log2 of the object size.
    pub block_size_shift: u8,
    /// Snapshot number in the chain.
    pub snap_id: u32,
    /// Own VID.
    pub vdi_id: u32,
    /// Parent VID, 0 for a fresh VDI.
    pub parent_vdi_id: u32,
    /// Hyper volumes only.
    pub btree_counter: u32,
}

impl Default for InodeHeader {
    fn default() -> InodeHeader {
        InodeHeader {
            name: [0; NAME_LEN],
            tag: [0; TAG_LEN],
            create_time: 0,
            snap_ctime: 0,
            vm_clock_nsec: 0,
            vdi_size: 0,
            vm_state_size: 0,
            copy_policy: 0,
            store_policy: 0,
            nr_copies: 0,
            block_size_shift: 0,
            snap_id: 0,
            vdi_id: 0,
            parent_vdi_id: 0,
            btree_counter: 0,
        }
    }
}

/// The bytes of a NUL-padded field up to the first NUL.
pub fn trim_nul(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

impl InodeHeader {
    /// Parse the header fields from the first 572 bytes of `bytes` (the
    /// server's own 568-byte lookups lack `btree_counter`, which is then 0).
    pub fn parse(bytes: &[u8]) -> Result<InodeHeader, DecodeError> {
        if bytes.len() < LOOKUP_LEN {
            return Err(DecodeError::Truncated {
                need: LOOKUP_LEN,
                have: bytes.len(),
            });
        }
        let mut h = InodeHeader::default();
        h.name
            .copy_from_slice(&bytes[field::NAME..field::NAME + NAME_LEN]);
        h.tag
            .copy_from_slice(&bytes[field::TAG..field::TAG + TAG_LEN]);
        let u64_at = |at: usize| LittleEndian::read_u64(&bytes[at..at + 8]);
        let u32_at = |at: usize| LittleEndian::read_u32(&bytes[at..at + 4]);
        h.create_time = u64_at(field::CREATE_TIME);
        h.snap_ctime = u64_at(field::SNAP_CTIME);
        h.vm_clock_nsec = u64_at(field::VM_CLOCK_NSEC);
        h.vdi_size = u64_at(field::VDI_SIZE);
        h.vm_state_size = u64_at(field::VM_STATE_SIZE);
        h.copy_policy = bytes[field::COPY_POLICY];
        h.store_policy = bytes[field::STORE_POLICY];
        h.nr_copies = bytes[field::NR_COPIES];
        h.block_size_shift = bytes[field::BLOCK_SIZE_SHIFT];
        h.snap_id = u32_at(field::SNAP_ID);
        h.vdi_id = u32_at(field::VDI_ID);
        h.parent_vdi_id = u32_at(field::PARENT_VDI_ID);
        if bytes.len() >= HEADER_FIELDS_LEN {
            h.btree_counter = u32_at(field::BTREE_COUNTER);
        }
        Ok(h)
    }

    /// Write the full 4664-byte header into `out` (the retired area zeroed).
    pub fn emit(&self, out: &mut [u8]) -> Result<(), DecodeError> {
        if out.len() < HEADER_LEN {
            return Err(DecodeError::Truncated {
                need: HEADER_LEN,
                have: out.len(),
            });
        }
        let out = &mut out[..HEADER_LEN];
        out.fill(0);
        out[field::NAME..field::NAME + NAME_LEN].copy_from_slice(&self.name);
        out[field::TAG..field::TAG + TAG_LEN].copy_from_slice(&self.tag);
        LittleEndian::write_u64(&mut out[field::CREATE_TIME..], self.create_time);
        LittleEndian::write_u64(&mut out[field::SNAP_CTIME..], self.snap_ctime);
        LittleEndian::write_u64(&mut out[field::VM_CLOCK_NSEC..], self.vm_clock_nsec);
        LittleEndian::write_u64(&mut out[field::VDI_SIZE..], self.vdi_size);
        LittleEndian::write_u64(&mut out[field::VM_STATE_SIZE..], self.vm_state_size);
        out[field::COPY_POLICY] = self.copy_policy;
        out[field::STORE_POLICY] = self.store_policy;
        out[field::NR_COPIES] = self.nr_copies;
        out[field::BLOCK_SIZE_SHIFT] = self.block_size_shift;
        LittleEndian::write_u32(&mut out[field::SNAP_ID..], self.snap_id);
        LittleEndian::write_u32(&mut out[field::VDI_ID..], self.vdi_id);
        LittleEndian::write_u32(&mut out[field::PARENT_VDI_ID..], self.parent_vdi_id);
        LittleEndian::write_u32(&mut out[field::BTREE_COUNTER..], self.btree_counter);
        Ok(())
    }

    /// The name without its NUL padding; empty for a deleted VDI.
    pub fn name(&self) -> &[u8] {
        trim_nul(&self.name)
    }

    /// The tag without its NUL padding.
    pub fn tag(&self) -> &[u8] {
        trim_nul(&self.tag)
    }

    /// Whether this VDI is a snapshot (`snap_ctime` set).
    pub fn is_snapshot(&self) -> bool {
        self.snap_ctime != 0
    }

    /// Whether this is a deleted VDI's tombstone (empty name).
    pub fn is_deleted(&self) -> bool {
        self.name[0] == 0
    }

    /// Whether `dog` would call this VDI a clone.
    pub fn is_clone(&self) -> bool {
        !self.is_snapshot() && self.snap_id == 1 && self.parent_vdi_id != 0
    }

    /// Whether the index is a B-tree (hyper volume).
    pub fn is_hyper(&self) -> bool {
        self.store_policy != 0
    }

    /// The object size, refusing shifts outside 20..=31.
    pub fn object_size(&self) -> Result<ObjectSize, SizeError> {
        ObjectSize::from_shift(self.block_size_shift)
    }

    /// The number of index entries the VDI's size covers, refusing hyper
    /// volumes and sizes past the flat index.
    pub fn index_len(&self) -> Result<u32, SizeError> {
        if self.is_hyper() {
            return Err(SizeError::HyperVolume);
        }
        let objects = self.object_size()?.object_count(self.vdi_size);
        if objects > MAX_DATA_OBJS {
            return Err(SizeError::IndexOutOfRange(objects));
        }
        Ok(objects as u32)
    }
}

/// A byte range of an inode object that a client writes with WRITE_OBJ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InodeRange {
    /// Offset inside the inode object.
    pub offset: u32,
    /// Length in bytes.
    pub len: u32,
}

impl InodeRange {
    /// The tag (256 bytes at 256), as `dog vdi snapshot` writes it.
    pub const TAG: InodeRange = InodeRange {
        offset: field::TAG as u32,
        len: TAG_LEN as u32,
    };
    /// `vm_clock_nsec`.
    pub const VM_CLOCK_NSEC: InodeRange = InodeRange {
        offset: field::VM_CLOCK_NSEC as u32,
        len: 8,
    };
    /// `vm_state_size`.
    pub const VM_STATE_SIZE: InodeRange = InodeRange {
        offset: field::VM_STATE_SIZE as u32,
        len: 8,
    };
    /// `vdi_size` (8 bytes at 536): the only bytes a resize needs.
    pub const VDI_SIZE: InodeRange = InodeRange {
        offset: field::VDI_SIZE as u32,
        len: 8,
    };
    /// The whole header.
    pub const HEADER: InodeRange = InodeRange {
        offset: 0,
        len: HEADER_LEN as u32,
    };

    /// Index entry `idx` (4 bytes): the refcounted update after a CREATE.
    pub fn index_entry(idx: u32) -> Result<InodeRange, SizeError> {
        InodeRange::index_run(idx, 1)
    }

    /// Entries `first..first + count`, a contiguous run inside the index.
    pub fn index_run(first: u32, count: u32) -> Result<InodeRange, SizeError> {
        let end = u64::from(first) + u64::from(count);
        if count == 0 || end > MAX_DATA_OBJS {
            return Err(SizeError::IndexOutOfRange(end));
        }
        Ok(InodeRange {
            offset: INDEX_OFFSET + INDEX_ENTRY_LEN * first,
            len: INDEX_ENTRY_LEN * count,
        })
    }

    /// Whether the range lies inside the index, so that the server's
    /// reference counting applies to it.
    pub fn is_index_update(&self) -> bool {
        self.offset >= INDEX_OFFSET
            && u64::from(self.offset) + u64::from(self.len) <= u64::from(HEADER_AND_INDEX_LEN)
    }

    /// The index entries the range covers, if it lies inside the index.
    pub fn index_entries(&self) -> Option<core::ops::Range<u32>> {
        if !self.is_index_update()
            || self.offset % INDEX_ENTRY_LEN != 0
            || self.len % INDEX_ENTRY_LEN != 0
        {
            return None;
        }
        let first = (self.offset - INDEX_OFFSET) / INDEX_ENTRY_LEN;
        Some(first..first + self.len / INDEX_ENTRY_LEN)
    }
}

/// Encode a tag into its 256-byte field (NUL padded).
pub fn encode_tag(tag: &[u8], out: &mut [u8; TAG_LEN]) {
    out.fill(0);
    let n = tag.len().min(TAG_LEN - 1);
    out[..n].copy_from_slice(&tag[..n]);
}
