//! The virtio-blk device as a vhost-user-blk backend presents it (virtio
//! 1.2, §5.2): its feature bits, its configuration space, and its
//! requests: a 16-byte header (`type`, `reserved`, `sector`) the driver
//! wrote, the data, and one status byte the device writes last. Discard
//! and write-zeroes carry 16-byte segments (`sector`, `num_sectors`,
//! `flags`). Pure: bytes in, values out; nothing here touches guest memory.

/// Bytes of a sector, the unit of `sector` and `capacity`.
pub const SECTOR: u64 = 512;

/// `VIRTIO_BLK_F_SIZE_MAX`: `size_max` is the largest segment.
pub const F_SIZE_MAX: u64 = 1 << 1;
/// `VIRTIO_BLK_F_SEG_MAX`: `seg_max` is the most segments per request.
pub const F_SEG_MAX: u64 = 1 << 2;
/// `VIRTIO_BLK_F_RO`: read-only.
pub const F_RO: u64 = 1 << 5;
/// `VIRTIO_BLK_F_BLK_SIZE`: `blk_size` is the logical block size.
pub const F_BLK_SIZE: u64 = 1 << 6;
/// `VIRTIO_BLK_F_FLUSH`: the flush command.
pub const F_FLUSH: u64 = 1 << 9;
/// `VIRTIO_BLK_F_TOPOLOGY`: the optimal I/O size and alignment.
pub const F_TOPOLOGY: u64 = 1 << 10;
/// `VIRTIO_BLK_F_MQ`: `num_queues` queues.
pub const F_MQ: u64 = 1 << 12;
/// `VIRTIO_BLK_F_DISCARD`: the discard command.
pub const F_DISCARD: u64 = 1 << 13;
/// `VIRTIO_BLK_F_WRITE_ZEROES`: the write-zeroes command.
pub const F_WRITE_ZEROES: u64 = 1 << 14;
/// `VIRTIO_RING_F_EVENT_IDX`: notifications suppressed by index.
pub const F_EVENT_IDX: u64 = 1 << 29;
/// `VIRTIO_F_VERSION_1`: a virtio 1.x device.
pub const F_VERSION_1: u64 = 1 << 32;

/// `VIRTIO_BLK_S_OK`.
pub const S_OK: u8 = 0;
/// `VIRTIO_BLK_S_IOERR`.
pub const S_IOERR: u8 = 1;
/// `VIRTIO_BLK_S_UNSUPP`.
pub const S_UNSUPP: u8 = 2;

/// Bytes of a request header.
pub const HEADER_LEN: usize = 16;
/// Bytes of a discard or write-zeroes segment.
pub const SEGMENT_LEN: usize = 16;
/// Bytes of the device id (`VIRTIO_BLK_ID_BYTES`).
pub const ID_LEN: usize = 20;
/// Bytes of the configuration space this device fills.
pub const CONFIG_LEN: usize = 60;
/// Write-zeroes flag: the range may be unmapped.
pub const WRITE_ZEROES_UNMAP: u32 = 1;

/// A request's command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `VIRTIO_BLK_T_IN` (0): read.
    In,
    /// `VIRTIO_BLK_T_OUT` (1): write.
    Out,
    /// `VIRTIO_BLK_T_FLUSH` (4).
    Flush,
    /// `VIRTIO_BLK_T_GET_ID` (8): the device id.
    GetId,
    /// `VIRTIO_BLK_T_DISCARD` (11).
    Discard,
    /// `VIRTIO_BLK_T_WRITE_ZEROES` (13).
    WriteZeroes,
    /// Anything else: answered UNSUPP.
    Other(u32),
}

/// A request header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The command.
    pub kind: Kind,
    /// Where it starts, in sectors.
    pub sector: u64,
}

impl Header {
    /// The header in `b` (16 bytes, little-endian).
    pub fn parse(b: &[u8; HEADER_LEN]) -> Header {
        let t = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let mut s = [0u8; 8];
        s.copy_from_slice(&b[8..16]);
        let kind = match t {
            0 => Kind::In,
            1 => Kind::Out,
            4 => Kind::Flush,
            8 => Kind::GetId,
            11 => Kind::Discard,
            13 => Kind::WriteZeroes,
            other => Kind::Other(other),
        };
        Header {
            kind,
            sector: u64::from_le_bytes(s),
        }
    }
}

/// A discard or write-zeroes segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Where, in sectors.
    pub sector: u64,
    /// How many sectors.
    pub sectors: u32,
    /// `VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP` and reserved bits.
    pub flags: u32,
}

impl Segment {
    /// The segment in `b` (16 bytes).
    pub fn parse(b: &[u8; SEGMENT_LEN]) -> Segment {
        let mut s = [0u8; 8];
        s.copy_from_slice(&b[..8]);
        Segment {
            sector: u64::from_le_bytes(s),
            sectors: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
            flags: u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
        }
    }
}

/// What the configuration space says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Bytes of the volume.
    pub size: u64,
    /// The largest segment, in bytes.
    pub size_max: u32,
    /// The largest discard or write-zeroes range, in bytes.
    pub max_io: u32,
    /// Segments per request.
    pub seg_max: u32,
    /// The optimal I/O size (the object size), in bytes.
    pub opt_io: u32,
    /// Queues.
    pub queues: u16,
}

impl Config {
    /// `struct virtio_blk_config` (its first [`CONFIG_LEN`] bytes).
    pub fn bytes(&self) -> [u8; CONFIG_LEN] {
        let mut b = [0u8; CONFIG_LEN];
        b[0..8].copy_from_slice(&(self.size / SECTOR).to_le_bytes());
        b[8..12].copy_from_slice(&self.size_max.to_le_bytes());
        b[12..16].copy_from_slice(&self.seg_max.to_le_bytes());
        // geometry (16..20) left zero; blk_size:
        b[20..24].copy_from_slice(&(SECTOR as u32).to_le_bytes());
        // topology: physical_block_exp 0, alignment 0, min_io_size 1
        // block, opt_io_size in blocks.
        b[26..28].copy_from_slice(&1u16.to_le_bytes());
        b[28..32].copy_from_slice(&(self.opt_io / SECTOR as u32).to_le_bytes());
        // writeback (32) 0; num_queues:
        b[34..36].copy_from_slice(&self.queues.to_le_bytes());
        let sectors = self.max_io / SECTOR as u32;
        b[36..40].copy_from_slice(&sectors.to_le_bytes()); // max_discard_sectors
        b[40..44].copy_from_slice(&1u32.to_le_bytes()); // max_discard_seg
        b[44..48].copy_from_slice(&1u32.to_le_bytes()); // discard_sector_alignment
        b[48..52].copy_from_slice(&sectors.to_le_bytes()); // max_write_zeroes_sectors
        b[52..56].copy_from_slice(&1u32.to_le_bytes()); // max_write_zeroes_seg
        b[56] = 1; // write_zeroes_may_unmap
        b
    }
}

/// The device id: the VDI's name, cut or NUL-padded to 20 bytes.
pub fn device_id(name: &str) -> [u8; ID_LEN] {
    let mut id = [0u8; ID_LEN];
    let n = name.len().min(ID_LEN);
    id[..n].copy_from_slice(&name.as_bytes()[..n]);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_segments_as_the_spec_lays_them_out() {
        let mut b = [0u8; HEADER_LEN];
        b[0] = 1;
        b[8..16].copy_from_slice(&2048u64.to_le_bytes());
        assert_eq!(
            Header::parse(&b),
            Header {
                kind: Kind::Out,
                sector: 2048
            }
        );
        b[0] = 99;
        assert_eq!(Header::parse(&b).kind, Kind::Other(99));
        let mut s = [0u8; SEGMENT_LEN];
        s[..8].copy_from_slice(&8u64.to_le_bytes());
        s[8..12].copy_from_slice(&16u32.to_le_bytes());
        s[12] = 1;
        assert_eq!(
            Segment::parse(&s),
            Segment {
                sector: 8,
                sectors: 16,
                flags: WRITE_ZEROES_UNMAP
            }
        );
    }

    #[test]
    fn the_configuration_space_names_size_queues_and_limits() {
        let c = Config {
            size: 1 << 30,
            size_max: 256 << 10,
            max_io: 4 << 20,
            seg_max: 126,
            opt_io: 4 << 20,
            queues: 4,
        }
        .bytes();
        assert_eq!(&c[0..8], &(2_097_152u64).to_le_bytes());
        assert_eq!(&c[20..24], &512u32.to_le_bytes());
        assert_eq!(&c[34..36], &4u16.to_le_bytes());
        assert_eq!(&c[36..40], &8192u32.to_le_bytes());
        assert_eq!(device_id("vm1")[..4], *b"vm1\0");
    }
}
