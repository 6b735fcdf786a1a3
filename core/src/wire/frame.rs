//! A checked view over the 48 bytes of a request or response header.
//!
//! `Frame` reads and writes fields in place, in the smoltcp manner: it never
//! copies the buffer and every accessor is bounds-safe once
//! [`Frame::new_checked`] has accepted the buffer.

use byteorder::{ByteOrder, LittleEndian};

use super::HEADER_LEN;
use crate::error::DecodeError;

/// Byte ranges of the header fields (PROTOCOL.md §2).
pub mod field {
    use core::ops::Range;

    /// `proto_ver`, u8.
    pub const PROTO_VER: usize = 0;
    /// `opcode`, u8.
    pub const OPCODE: usize = 1;
    /// `flags`, u16.
    pub const FLAGS: Range<usize> = 2..4;
    /// `epoch`, u32.
    pub const EPOCH: Range<usize> = 4..8;
    /// `id`, u32.
    pub const ID: Range<usize> = 8..12;
    /// `data_length`, u32.
    pub const DATA_LENGTH: Range<usize> = 12..16;
    /// The op-specific union of a request.
    pub const REQ_ARGS: Range<usize> = 16..48;

    /// Request, object variant (`sd_req.obj`).
    pub mod obj {
        use core::ops::Range;
        /// `oid`, u64.
        pub const OID: Range<usize> = 16..24;
        /// `cow_oid`, u64.
        pub const COW_OID: Range<usize> = 24..32;
        /// `copies`, u8.
        pub const COPIES: usize = 32;
        /// `copy_policy`, u8.
        pub const COPY_POLICY: usize = 33;
        /// `ec_index`, u8 (internal).
        pub const EC_INDEX: usize = 34;
        /// `tgt_epoch`, u32 (internal).
        pub const TGT_EPOCH: Range<usize> = 36..40;
        /// `offset`, u32 (a u64 in QEMU; the high half is the pad).
        pub const OFFSET: Range<usize> = 40..44;
    }

    /// Request, VDI variant (`sd_req.vdi`).
    pub mod vdi {
        use core::ops::Range;
        /// `vdi_size`, u64.
        pub const VDI_SIZE: Range<usize> = 16..24;
        /// `base_vdi_id`, u32.
        pub const BASE_VDI_ID: Range<usize> = 24..28;
        /// `copies`, u8.
        pub const COPIES: usize = 28;
        /// `copy_policy`, u8.
        pub const COPY_POLICY: usize = 29;
        /// `store_policy`, u8.
        pub const STORE_POLICY: usize = 30;
        /// `block_size_shift`, u8.
        pub const BLOCK_SIZE_SHIFT: usize = 31;
        /// `snapid`, u32.
        pub const SNAPID: Range<usize> = 32..36;
        /// `type`, u32 (lock type).
        pub const TYPE: Range<usize> = 36..40;
    }

    /// Response common part.
    pub mod rsp {
        use core::ops::Range;
        /// `result`, u32.
        pub const RESULT: Range<usize> = 16..20;
        /// The op-specific union of a response.
        pub const ARGS: Range<usize> = 20..48;
        /// obj: `copies`, u8.
        pub const OBJ_COPIES: usize = 20;
        /// obj: `offset`, u64.
        pub const OBJ_OFFSET: Range<usize> = 24..32;
        /// vdi: `rsvd`, u32.
        pub const VDI_RSVD: Range<usize> = 20..24;
        /// vdi: `vdi_id`, u32.
        pub const VDI_ID: Range<usize> = 24..28;
        /// vdi: `attr_id`, u32.
        pub const ATTR_ID: Range<usize> = 28..32;
        /// vdi: `copies`, u8.
        pub const VDI_COPIES: usize = 32;
        /// vdi: `block_size_shift`, u8.
        pub const VDI_BLOCK_SIZE_SHIFT: usize = 33;
        /// cluster default: `nr_copies`, u8.
        pub const DEFAULT_COPIES: usize = 20;
        /// cluster default: `copy_policy`, u8.
        pub const DEFAULT_COPY_POLICY: usize = 21;
        /// cluster default: `block_size_shift`, u8.
        pub const DEFAULT_BLOCK_SIZE_SHIFT: usize = 22;
    }
}

/// A view over a buffer that holds at least one 48-byte header.
#[derive(Debug, Clone, Copy)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wrap a buffer of at least 48 bytes; shorter ones are refused.
    pub fn new_checked(buffer: T) -> Result<Frame<T>, DecodeError> {
        let have = buffer.as_ref().len();
        if have < HEADER_LEN {
            return Err(DecodeError::Truncated {
                need: HEADER_LEN,
                have,
            });
        }
        Ok(Frame { buffer })
    }

    /// Give the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The 48 header bytes.
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..HEADER_LEN]
    }

    /// The byte at `at` (must be below 48).
    pub fn u8_at(&self, at: usize) -> u8 {
        self.header()[at]
    }

    /// The little-endian u16 at `at`.
    pub fn u16_at(&self, at: usize) -> u16 {
        LittleEndian::read_u16(&self.header()[at..at + 2])
    }

    /// The little-endian u32 at `at`.
    pub fn u32_at(&self, at: usize) -> u32 {
        LittleEndian::read_u32(&self.header()[at..at + 4])
    }

    /// The little-endian u64 at `at`.
    pub fn u64_at(&self, at: usize) -> u64 {
        LittleEndian::read_u64(&self.header()[at..at + 8])
    }

    /// `proto_ver`.
    pub fn proto_ver(&self) -> u8 {
        self.u8_at(field::PROTO_VER)
    }

    /// `opcode` byte.
    pub fn opcode(&self) -> u8 {
        self.u8_at(field::OPCODE)
    }

    /// `flags`.
    pub fn flags(&self) -> u16 {
        self.u16_at(field::FLAGS.start)
    }

    /// `epoch`.
    pub fn epoch(&self) -> u32 {
        self.u32_at(field::EPOCH.start)
    }

    /// `id`.
    pub fn id(&self) -> u32 {
        self.u32_at(field::ID.start)
    }

    /// `data_length`.
    pub fn data_length(&self) -> u32 {
        self.u32_at(field::DATA_LENGTH.start)
    }

    /// `result` (responses only).
    pub fn result(&self) -> u32 {
        self.u32_at(field::rsp::RESULT.start)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    fn header_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[..HEADER_LEN]
    }

    /// Zero all 48 header bytes.
    pub fn clear(&mut self) {
        self.header_mut().fill(0);
    }

    /// Set the byte at `at`.
    pub fn set_u8_at(&mut self, at: usize, value: u8) {
        self.header_mut()[at] = value;
    }

    /// Set the little-endian u16 at `at`.
    pub fn set_u16_at(&mut self, at: usize, value: u16) {
        LittleEndian::write_u16(&mut self.header_mut()[at..at + 2], value);
    }

    /// Set the little-endian u32 at `at`.
    pub fn set_u32_at(&mut self, at: usize, value: u32) {
        LittleEndian::write_u32(&mut self.header_mut()[at..at + 4], value);
    }

    /// Set the little-endian u64 at `at`.
    pub fn set_u64_at(&mut self, at: usize, value: u64) {
        LittleEndian::write_u64(&mut self.header_mut()[at..at + 8], value);
    }

    /// Copy `bytes` into the header at `at`.
    pub fn set_bytes_at(&mut self, at: usize, bytes: &[u8]) {
        self.header_mut()[at..at + bytes.len()].copy_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_checked_for_length_then_read_at_fixed_offsets() {
        assert!(Frame::new_checked(&[0u8; 47][..]).is_err());
        let mut b = [0u8; 48];
        let mut f = Frame::new_checked(&mut b[..]).unwrap();
        f.set_u8_at(0, 0x02);
        f.set_u8_at(1, 0x01);
        f.set_u16_at(2, 0x0001);
        f.set_u32_at(4, 7);
        f.set_u32_at(8, 0xdead_beef);
        f.set_u32_at(12, 512);
        f.set_u64_at(16, 0x006a_cfef_0000_0000);
        assert_eq!(
            (f.proto_ver(), f.opcode(), f.flags(), f.epoch(), f.id()),
            (2, 1, 1, 7, 0xdead_beef)
        );
        assert_eq!(f.data_length(), 512);
        assert_eq!(f.u64_at(16), 0x006a_cfef_0000_0000);
        // Little-endian on the wire.
        assert_eq!(&b[8..12], &[0xef, 0xbe, 0xad, 0xde]);
        assert_eq!(&b[16..24], &[0, 0, 0, 0, 0xef, 0xcf, 0x6a, 0]);
    }
}
