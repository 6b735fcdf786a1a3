//! Object size from `block_size_shift`, and the size limits that follow
//! (PROTOCOL.md §7.2).

use crate::error::SizeError;

/// Smallest `block_size_shift` (1 MiB objects).
pub const MIN_BLOCK_SIZE_SHIFT: u8 = 20;
/// Largest `block_size_shift` (2 GiB objects).
pub const MAX_BLOCK_SIZE_SHIFT: u8 = 31;
/// The usual default (4 MiB objects).
pub const DEFAULT_BLOCK_SIZE_SHIFT: u8 = 22;
/// Entries in a flat (store_policy 0) index.
pub const MAX_DATA_OBJS: u64 = 1 << 20;
/// The largest hyper volume: 4 MiB × 2^32.
pub const MAX_HYPER_VDI_SIZE: u64 = (4 << 20) << 32;

/// The size of a VDI's data objects, `1 << block_size_shift`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ObjectSize {
    shift: u8,
}

impl Default for ObjectSize {
    fn default() -> ObjectSize {
        ObjectSize {
            shift: DEFAULT_BLOCK_SIZE_SHIFT,
        }
    }
}

impl ObjectSize {
    /// From a `block_size_shift` of 20..=31.
    pub const fn from_shift(shift: u8) -> Result<ObjectSize, SizeError> {
        if shift < MIN_BLOCK_SIZE_SHIFT || shift > MAX_BLOCK_SIZE_SHIFT {
            Err(SizeError::BadBlockSizeShift(shift))
        } else {
            Ok(ObjectSize { shift })
        }
    }

    /// From a byte count that is a power of two from 1 MiB to 2 GiB.
    pub const fn from_bytes(bytes: u64) -> Result<ObjectSize, SizeError> {
        if !bytes.is_power_of_two() {
            return Err(SizeError::BadObjectSize(bytes));
        }
        let shift = bytes.trailing_zeros();
        if shift < MIN_BLOCK_SIZE_SHIFT as u32 || shift > MAX_BLOCK_SIZE_SHIFT as u32 {
            return Err(SizeError::BadObjectSize(bytes));
        }
        Ok(ObjectSize { shift: shift as u8 })
    }

    /// `block_size_shift`.
    pub const fn shift(self) -> u8 {
        self.shift
    }

    /// Bytes per object.
    pub const fn bytes(self) -> u32 {
        1 << self.shift
    }

    /// The largest flat VDI: object size × 2^20.
    pub const fn max_vdi_size(self) -> u64 {
        (self.bytes() as u64) * MAX_DATA_OBJS
    }

    /// Refuse a VDI size of 0 or past [`ObjectSize::max_vdi_size`].
    pub const fn check_vdi_size(self, size: u64) -> Result<(), SizeError> {
        if size == 0 {
            Err(SizeError::Zero)
        } else if size > self.max_vdi_size() {
            Err(SizeError::TooLarge {
                size,
                max: self.max_vdi_size(),
            })
        } else {
            Ok(())
        }
    }

    /// How many objects cover `vdi_size` bytes (rounded up).
    pub const fn object_count(self, vdi_size: u64) -> u64 {
        vdi_size.div_ceil(self.bytes() as u64)
    }

    /// The object index and the offset inside it of byte `offset`.
    pub const fn locate(self, offset: u64) -> (u64, u32) {
        (
            offset >> self.shift,
            (offset & (self.bytes() as u64 - 1)) as u32,
        )
    }

    /// The byte offset where object `idx` starts.
    pub const fn start_of(self, idx: u64) -> u64 {
        idx << self.shift
    }
}
