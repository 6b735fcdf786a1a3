//! The server's in-memory VDI bookkeeping: the two VID bitmaps and the
//! per-VID state table (`struct vdi_state_entry` in sheep).

use sheepdog_core::bitmap::VdiBitmap;
use sheepdog_core::oid::NR_VDIS;
use sheepdog_core::wire::VDI_BITMAP_LEN;

/// A 2^24-bit VID bitmap that the server owns: core's view over 2 MiB.
#[derive(Clone, Debug)]
pub struct VidBitmap(VdiBitmap<Vec<u8>>);

impl Default for VidBitmap {
    fn default() -> VidBitmap {
        VidBitmap(VdiBitmap::new_checked(vec![0; VDI_BITMAP_LEN]).expect("2 MiB"))
    }
}

impl VidBitmap {
    /// Whether `vid` is set (false past 2^24).
    pub fn get(&self, vid: u32) -> bool {
        self.0.contains(vid)
    }

    /// Set `vid` (ignored past 2^24).
    pub fn set(&mut self, vid: u32) {
        self.0.insert(vid);
    }

    /// The first clear bit at or after `start`, or [`NR_VDIS`] if none:
    /// sheep's `find_next_zero_bit`, which does not wrap (unlike
    /// [`VdiBitmap::next_free`]).
    pub fn next_zero(&self, start: u32) -> u32 {
        let bytes = self.0.as_bytes();
        let mut vid = start;
        while vid < NR_VDIS {
            if vid & 7 == 0 && bytes[(vid >> 3) as usize] == 0xff {
                vid += 8;
                continue;
            }
            if !self.get(vid) {
                return vid;
            }
            vid += 1;
        }
        NR_VDIS
    }

    /// The 2 MiB wire form.
    pub fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Every set VID, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter()
    }
}

/// A VDI's lock (PROTOCOL.md §9.8). The reference cluster has one gateway,
/// so every lock belongs to "this" node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LockState {
    /// Not locked.
    #[default]
    Unlocked,
    /// Normal (exclusive) lock held by this node.
    Locked,
    /// Shared lock; this node is the single participant.
    Shared,
}

impl LockState {
    /// The `lock_state` value of GET_VDI_COPIES.
    pub fn to_u32(self) -> u32 {
        match self {
            LockState::Unlocked => 1,
            LockState::Locked => 2,
            LockState::Shared => 3,
        }
    }
}

/// What the server remembers about a VID besides its inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VdiState {
    /// Effective copies (d+p for erasure-coded VDIs).
    pub nr_copies: u8,
    /// Whether the VID is a snapshot: CREATE/WRITE to its data objects get
    /// READONLY.
    pub snapshot: bool,
    /// Whether DEL_VDI was answered for it.
    pub deleted: bool,
    /// Erasure-code byte, 0 for replication.
    pub copy_policy: u8,
    /// Object size shift.
    pub block_size_shift: u8,
    /// The VID it was created from.
    pub parent_vid: u32,
    /// Its lock.
    pub lock: LockState,
    /// The node (index in the node list) whose gateway took a normal
    /// lock, or takes part in a shared one: sheep's lock owner is the
    /// gateway node, not the client.
    pub owner: usize,
}
