//! Object ids and VIDs (PROTOCOL.md §7.1).

use core::fmt;

use crate::error::SizeError;

/// Bit 63: inode object.
pub const VDI_BIT: u64 = 1 << 63;
/// Bit 62: VM state object.
pub const VMSTATE_BIT: u64 = 1 << 62;
/// Bit 61: VDI attribute object.
pub const VDI_ATTR_BIT: u64 = 1 << 61;
/// Bit 60: hyper-volume B-tree node.
pub const VDI_BTREE_BIT: u64 = 1 << 60;
/// Bit 59: reference-count ledger (internal).
pub const LEDGER_BIT: u64 = 1 << 59;
/// Where the VID sits in an oid.
pub const VID_SHIFT: u32 = 32;
/// Mask of the VID bits of an oid.
pub const OID_VID_MASK: u64 = 0x00ff_ffff_0000_0000;
/// Number of VIDs (2^24); VID 0 is never allocated.
pub const NR_VDIS: u32 = 1 << 24;

/// A VDI id: 24 bits, never 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Vid(u32);

impl Vid {
    /// A VID from its number; 0 and values of 2^24 and above are refused.
    pub const fn new(vid: u32) -> Result<Vid, SizeError> {
        if vid == 0 || vid >= NR_VDIS {
            Err(SizeError::BadVid(vid))
        } else {
            Ok(Vid(vid))
        }
    }

    /// The VID an index entry names; `None` for 0 (unallocated) or an entry
    /// out of range.
    pub const fn from_entry(entry: u32) -> Option<Vid> {
        match Vid::new(entry) {
            Ok(v) => Some(v),
            Err(_) => None,
        }
    }

    /// The number.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Vid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// What an oid names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OidKind {
    /// A data object of a VDI.
    Data,
    /// A VDI's inode.
    Inode,
    /// A VM state object.
    Vmstate,
    /// A VDI attribute.
    Attr,
    /// A hyper-volume B-tree node.
    Btree,
    /// A reference-count ledger.
    Ledger,
}

/// A 64-bit object id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Oid(pub u64);

impl Oid {
    const fn compose(bits: u64, vid: Vid, low: u32) -> Oid {
        Oid(bits | ((vid.0 as u64) << VID_SHIFT) | low as u64)
    }

    /// Data object `idx` of `vid`.
    pub const fn data(vid: Vid, idx: u32) -> Oid {
        Oid::compose(0, vid, idx)
    }

    /// The inode of `vid`.
    pub const fn inode(vid: Vid) -> Oid {
        Oid::compose(VDI_BIT, vid, 0)
    }

    /// VM state object `idx` of `vid`.
    pub const fn vmstate(vid: Vid, idx: u32) -> Oid {
        Oid::compose(VMSTATE_BIT, vid, idx)
    }

    /// Attribute `attr_id` under the name-hash VID `hash_vid`.
    pub const fn attr(hash_vid: Vid, attr_id: u32) -> Oid {
        Oid::compose(VDI_ATTR_BIT, hash_vid, attr_id)
    }

    /// B-tree node `n` of hyper volume `vid`.
    pub const fn btree(vid: Vid, n: u32) -> Oid {
        Oid::compose(VDI_BTREE_BIT, vid, n)
    }

    /// What the oid names, by its top bits.
    pub const fn kind(self) -> OidKind {
        if self.0 & VDI_BIT != 0 {
            OidKind::Inode
        } else if self.0 & VMSTATE_BIT != 0 {
            OidKind::Vmstate
        } else if self.0 & VDI_ATTR_BIT != 0 {
            OidKind::Attr
        } else if self.0 & VDI_BTREE_BIT != 0 {
            OidKind::Btree
        } else if self.0 & LEDGER_BIT != 0 {
            OidKind::Ledger
        } else {
            OidKind::Data
        }
    }

    /// The raw 24 VID bits (0 if the oid carries none).
    pub const fn vid_bits(self) -> u32 {
        ((self.0 & OID_VID_MASK) >> VID_SHIFT) as u32
    }

    /// The VID, if the bits name one.
    pub const fn vid(self) -> Option<Vid> {
        Vid::from_entry(self.vid_bits())
    }

    /// The low 32 bits: data index, attr id or node number.
    pub const fn index(self) -> u32 {
        self.0 as u32
    }

    /// Whether this is a data object.
    pub const fn is_data(self) -> bool {
        matches!(self.kind(), OidKind::Data)
    }
}

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}
