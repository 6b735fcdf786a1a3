//! Transmission replies (`doc/proto.md`, "Simple reply message" and
//! "Structured reply chunk message"). Headers are written by value or
//! into the caller's buffer; a read's data follows its header from
//! wherever the caller holds it.
//!
//! ```text
//! S: 0x67446698 error:32 cookie:64  [data]                  (simple)
//! S: 0x668e33ef flags:16 type:16 cookie:64 length:32 payload (chunk)
//! ```

use byteorder::{BigEndian, ByteOrder};

use super::handshake::cut;
use super::{chunk, put, Errno, Error, SIMPLE_REPLY_MAGIC, STRUCTURED_REPLY_MAGIC};

/// Bytes of a simple reply header.
pub const SIMPLE_LEN: usize = 16;
/// Bytes of a chunk header.
pub const CHUNK_LEN: usize = 20;
/// Bytes of an OFFSET_DATA chunk before its data.
pub const OFFSET_DATA_LEN: usize = CHUNK_LEN + 8;
/// Bytes of an OFFSET_HOLE chunk.
pub const OFFSET_HOLE_LEN: usize = CHUNK_LEN + 12;
/// Bytes of one block status descriptor.
pub const EXTENT_LEN: usize = 8;

/// A simple reply: success (a read's data follows) or an error.
pub fn simple(cookie: u64, error: Option<Errno>) -> [u8; SIMPLE_LEN] {
    let mut b = [0u8; SIMPLE_LEN];
    BigEndian::write_u32(&mut b[0..4], SIMPLE_REPLY_MAGIC);
    BigEndian::write_u32(&mut b[4..8], error.map_or(0, Errno::code));
    BigEndian::write_u64(&mut b[8..16], cookie);
    b
}

/// A chunk header.
pub fn chunk_header(cookie: u64, done: bool, chunk_type: u16, len: u32) -> [u8; CHUNK_LEN] {
    let mut b = [0u8; CHUNK_LEN];
    BigEndian::write_u32(&mut b[0..4], STRUCTURED_REPLY_MAGIC);
    let flags = if done { chunk::FLAG_DONE } else { 0 };
    BigEndian::write_u16(&mut b[4..6], flags);
    BigEndian::write_u16(&mut b[6..8], chunk_type);
    BigEndian::write_u64(&mut b[8..16], cookie);
    BigEndian::write_u32(&mut b[16..20], len);
    b
}

/// An NBD_REPLY_TYPE_NONE chunk: a reply with nothing more to say.
pub fn none(cookie: u64) -> [u8; CHUNK_LEN] {
    chunk_header(cookie, true, chunk::NONE, 0)
}

/// The header of an OFFSET_DATA chunk; `data_len` bytes of data follow.
pub fn offset_data(cookie: u64, done: bool, offset: u64, data_len: u32) -> [u8; OFFSET_DATA_LEN] {
    let mut b = [0u8; OFFSET_DATA_LEN];
    let h = chunk_header(cookie, done, chunk::OFFSET_DATA, 8 + data_len);
    b[..CHUNK_LEN].copy_from_slice(&h);
    BigEndian::write_u64(&mut b[CHUNK_LEN..], offset);
    b
}

/// An OFFSET_HOLE chunk: `hole_len` (non-zero) bytes of zeros at `offset`.
pub fn offset_hole(cookie: u64, done: bool, offset: u64, hole_len: u32) -> [u8; OFFSET_HOLE_LEN] {
    let mut b = [0u8; OFFSET_HOLE_LEN];
    let h = chunk_header(cookie, done, chunk::OFFSET_HOLE, 12);
    b[..CHUNK_LEN].copy_from_slice(&h);
    BigEndian::write_u64(&mut b[CHUNK_LEN..CHUNK_LEN + 8], offset);
    BigEndian::write_u32(&mut b[CHUNK_LEN + 8..], hole_len);
    b
}

/// An ERROR chunk ending the reply, with a message for people (cut to
/// 4096 bytes); returns the bytes written.
pub fn error(out: &mut [u8], cookie: u64, errno: Errno, message: &str) -> Result<usize, Error> {
    let m = cut(message);
    let h = chunk_header(cookie, true, chunk::ERROR, 6 + m.len() as u32);
    let at = put(out, 0, &h)?;
    let mut e = [0u8; 6];
    BigEndian::write_u32(&mut e[0..4], errno.code());
    BigEndian::write_u16(&mut e[4..6], m.len() as u16);
    let at = put(out, at, &e)?;
    put(out, at, m)
}

/// A BLOCK_STATUS chunk ending the reply: context `id` and the extents
/// (length, status flags), at least one; returns the bytes written.
pub fn block_status(
    out: &mut [u8],
    cookie: u64,
    id: u32,
    extents: &[(u32, u32)],
) -> Result<usize, Error> {
    if extents.is_empty() {
        // The spec requires one; a caller that has none has a bug.
        return Err(Error::OutOfPhase);
    }
    let len = 4 + extents.len() * EXTENT_LEN;
    let h = chunk_header(cookie, true, chunk::BLOCK_STATUS, len as u32);
    let mut at = put(out, 0, &h)?;
    at = put(out, at, &id.to_be_bytes())?;
    for &(length, flags) in extents {
        let mut d = [0u8; EXTENT_LEN];
        BigEndian::write_u32(&mut d[0..4], length);
        BigEndian::write_u32(&mut d[4..8], flags);
        at = put(out, at, &d)?;
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    //! Replies as the spec lays them out, byte for byte.
    use super::*;

    #[test]
    fn simple_reply() {
        assert_eq!(
            simple(0x0102_0304_0506_0708, Some(Errno::Io)),
            [
                0x67, 0x44, 0x66, 0x98, // magic
                0x00, 0x00, 0x00, 0x05, // EIO
                0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // cookie
            ]
        );
        assert_eq!(&simple(9, None)[4..8], &[0, 0, 0, 0]);
    }

    #[test]
    fn data_and_hole_chunks() {
        let d = offset_data(7, false, 4096, 512);
        assert_eq!(&d[0..4], &[0x66, 0x8e, 0x33, 0xef]);
        assert_eq!(&d[4..8], &[0, 0, 0, 1], "flags 0, type OFFSET_DATA");
        assert_eq!(&d[16..20], &(8u32 + 512).to_be_bytes());
        assert_eq!(&d[20..28], &4096u64.to_be_bytes());
        let h = offset_hole(7, true, 0, 65536);
        assert_eq!(&h[4..8], &[0, 1, 0, 2], "DONE, type OFFSET_HOLE");
        assert_eq!(&h[16..20], &12u32.to_be_bytes());
        assert_eq!(&h[28..32], &65536u32.to_be_bytes());
        assert_eq!(&none(7)[4..8], &[0, 1, 0, 0]);
    }

    #[test]
    fn error_and_block_status_chunks() {
        let mut out = [0u8; 64];
        let n = error(&mut out, 3, Errno::Inval, "bad").unwrap();
        assert_eq!(n, CHUNK_LEN + 6 + 3);
        assert_eq!(&out[4..8], &[0, 1, 0x80, 0x01], "DONE, type ERROR");
        assert_eq!(&out[20..26], &[0, 0, 0, 22, 0, 3]);
        assert_eq!(&out[26..29], b"bad");
        let n = block_status(&mut out, 3, 1, &[(4096, 0), (8192, 3)]).unwrap();
        assert_eq!(n, CHUNK_LEN + 4 + 2 * EXTENT_LEN);
        assert_eq!(&out[4..8], &[0, 1, 0, 5], "DONE, type BLOCK_STATUS");
        assert_eq!(&out[24..32], &[0, 0, 0x10, 0, 0, 0, 0, 0]);
        assert_eq!(block_status(&mut out, 3, 1, &[]), Err(Error::OutOfPhase));
        // A buffer too small is an error, never a panic.
        assert!(error(&mut [0u8; 10], 3, Errno::Inval, "bad").is_err());
    }
}
