//! The CRC32 of every object of a snapshot, kept as a chain is shipped:
//! an object's checksum changes only where a diff sends it (its bytes) or
//! releases it (zeros), so a chain of diffs carries the checksums of every
//! snapshot without reading any object twice.

use crc32fast::Hasher;

use crate::io::holes::Holes;
use crate::transfer::diff_export::Observer;
use crate::transfer::verify::zeros_hasher;

/// The CRC32 of `len` zero bytes.
fn zeros_crc(len: u64) -> u32 {
    zeros_hasher(len).finalize()
}

/// The checksums of one snapshot's objects.
#[derive(Clone, Debug)]
pub struct ObjectCrcs {
    os: u64,
    size: u64,
    crcs: Vec<u32>,
    /// The object being hashed, and its state.
    current: Option<(u32, Hasher)>,
}

impl ObjectCrcs {
    /// A volume of `size` bytes in objects of `os` that reads as zeros.
    pub fn zeros(os: u64, size: u64) -> ObjectCrcs {
        let n = size.div_ceil(os);
        let whole = zeros_crc(os);
        let crcs = (0..n)
            .map(|i| {
                let len = (size - i * os).min(os);
                if len == os {
                    whole
                } else {
                    zeros_crc(len)
                }
            })
            .collect();
        ObjectCrcs {
            os,
            size,
            crcs,
            current: None,
        }
    }

    /// Checksums given as they are (a manifest's).
    pub fn from_vec(os: u64, size: u64, crcs: Vec<u32>) -> ObjectCrcs {
        ObjectCrcs {
            os,
            size,
            crcs,
            current: None,
        }
    }

    /// The same objects as the start of the next snapshot, of `size`
    /// bytes (a resize adds objects of zeros, or zeros to the last one).
    pub fn next(&mut self, size: u64) -> ObjectCrcs {
        self.settle();
        let mut n = ObjectCrcs::zeros(self.os, size);
        for (i, c) in self.crcs.iter().enumerate() {
            let start = i as u64 * self.os;
            let old_len = (self.size - start).min(self.os);
            let new_len = size.saturating_sub(start).min(self.os);
            if i < n.crcs.len() && old_len == new_len {
                n.crcs[i] = *c;
            } else if i < n.crcs.len() && new_len > old_len {
                // Grown: the object's bytes, then zeros.
                let mut h = Hasher::new_with_initial_len(*c, old_len);
                h.combine(&zeros_hasher(new_len - old_len));
                n.crcs[i] = h.finalize();
            }
        }
        n
    }

    /// Every checksum, in object order.
    pub fn all(&mut self) -> &[u32] {
        self.settle();
        &self.crcs
    }

    /// Finish the object being hashed.
    fn settle(&mut self) {
        if let Some((idx, h)) = self.current.take() {
            if let Some(c) = self.crcs.get_mut(idx as usize) {
                *c = h.finalize();
            }
        }
    }
}

impl Observer for ObjectCrcs {
    fn data(&mut self, start: u64, bytes: &[u8]) {
        let idx = (start / self.os) as u32;
        if self.current.as_ref().is_some_and(|(i, _)| *i != idx) {
            self.settle();
        }
        self.current
            .get_or_insert_with(|| (idx, Hasher::new()))
            .1
            .update(bytes);
    }

    fn released(&mut self, start: u64, len: u64) {
        self.settle();
        let idx = (start / self.os) as usize;
        if let Some(c) = self.crcs.get_mut(idx) {
            *c = zeros_crc(len);
        }
    }
}

/// The checksum of each `os`-byte object of the first `size` bytes of
/// `f`, its holes hashed as zeros without reading them.
pub fn of_file(f: &mut std::fs::File, os: u64, size: u64) -> std::io::Result<Vec<u32>> {
    use std::io::{Seek, SeekFrom};

    f.seek(SeekFrom::Start(0))?;
    let mut holes = Holes::of(f);
    let whole = zeros_crc(os);
    let mut buf = vec![0u8; 1 << 20];
    let mut out = Vec::with_capacity(size.div_ceil(os) as usize);
    let mut at = 0u64;
    while at < size {
        let len = (size - at).min(os);
        let hole = match holes.as_mut() {
            Some(h) => h.skip_hole(len)?.is_some(),
            None => false,
        };
        if hole {
            out.push(if len == os { whole } else { zeros_crc(len) });
        } else {
            out.push(hash(&mut *f, &mut buf, len)?);
            if let Some(h) = holes.as_mut() {
                h.advance(len);
            }
        }
        at += len;
    }
    Ok(out)
}

/// The checksum of each `os`-byte object of a stream of `size` bytes.
pub fn of_stream(r: &mut dyn std::io::Read, os: u64, size: u64) -> std::io::Result<Vec<u32>> {
    let mut out = Vec::with_capacity(size.div_ceil(os) as usize);
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    while at < size {
        let len = (size - at).min(os);
        out.push(hash(r, &mut buf, len)?);
        at += len;
    }
    Ok(out)
}

/// The CRC32 of the next `len` bytes of `r`, read through `buf`.
fn hash(r: &mut dyn std::io::Read, buf: &mut [u8], len: u64) -> std::io::Result<u32> {
    let mut h = Hasher::new();
    let mut left = len;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = crate::io::input::read_full(r, &mut buf[..want])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        h.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crc(bytes: &[u8]) -> u32 {
        let mut h = Hasher::new();
        h.update(bytes);
        h.finalize()
    }

    #[test]
    fn a_chain_keeps_each_objects_checksum() {
        let os = 1024u64;
        let mut c = ObjectCrcs::zeros(os, 2500);
        assert_eq!(c.all().len(), 3);
        assert_eq!(c.all()[2], crc(&[0u8; 452]));
        // Object 1 written in two parts, object 2 released.
        c.data(1024, &[7u8; 600]);
        c.data(1624, &[9u8; 424]);
        c.released(2048, 452);
        let mut want = vec![7u8; 600];
        want.extend([9u8; 424]);
        assert_eq!(c.all()[1], crc(&want));
        assert_eq!(c.all()[0], crc(&[0u8; 1024]));
        // Grown by 600 bytes: the last object gets zeros, a new one too;
        // an object being hashed is finished first.
        c.data(0, &[1u8; 1024]);
        let mut g = c.next(3100);
        assert_eq!(g.all()[0], crc(&[1u8; 1024]));
        assert_eq!(g.all().len(), 4);
        assert_eq!(g.all()[2], crc(&[0u8; 1024]));
        assert_eq!(g.all()[3], crc(&[0u8; 28]));
        assert_eq!(g.all()[1], crc(&want));
        // From a stream.
        let bytes: Vec<u8> = (0..2500u32).map(|i| i as u8).collect();
        let got = of_stream(&mut &bytes[..], os, 2500).unwrap();
        assert_eq!(
            got,
            [
                crc(&bytes[..1024]),
                crc(&bytes[1024..2048]),
                crc(&bytes[2048..])
            ]
        );
    }
}
