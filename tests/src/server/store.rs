//! Object storage behind the reference server: the [`Store`] trait and an
//! in-memory implementation, [`MemStore`].
//!
//! A store knows nothing about the protocol. Objects are byte arrays named
//! by an [`Oid`]; bytes that were never written read as zeros, so an object
//! is logically as long as the protocol says (a 12.5 MB inode, a 4 MiB data
//! object) while only the non-zero parts cost memory or disk.

use std::collections::{BTreeMap, HashMap};
use std::io;

use sheepdog_core::oid::Oid;

/// Where the reference server keeps its objects.
///
/// Reads past the written extent of an object give zeros. `Ok(false)` means
/// "no such object"; `Err` is a real I/O failure (answered with `EIO`).
pub trait Store: Send {
    /// Fill `buf` with the bytes at `offset`; `Ok(false)` if the object
    /// does not exist.
    fn read(&self, oid: Oid, offset: u64, buf: &mut [u8]) -> io::Result<bool>;
    /// Overwrite bytes of an existing object; `Ok(false)` if it does not
    /// exist.
    fn write(&mut self, oid: Oid, offset: u64, data: &[u8]) -> io::Result<bool>;
    /// Create the object, replacing any existing one wholesale: afterwards
    /// it holds `data` at `offset` and zeros everywhere else.
    fn create(&mut self, oid: Oid, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Remove the object; `Ok(false)` if it did not exist.
    fn remove(&mut self, oid: Oid) -> io::Result<bool>;
    /// Whether the object exists.
    fn exists(&self, oid: Oid) -> io::Result<bool>;
    /// Every object, in no particular order.
    fn list(&self) -> io::Result<Vec<Oid>>;
    /// Bytes of memory or disk the objects take (an estimate).
    fn used_bytes(&self) -> u64;
    /// The cluster's own bookkeeping saved by [`Store::save_meta`].
    fn load_meta(&self) -> io::Result<Option<Vec<u8>>>;
    /// Save the cluster's bookkeeping (bitmaps and VDI states).
    fn save_meta(&mut self, meta: &[u8]) -> io::Result<()>;
}

/// Page size of [`MemStore`] objects.
const PAGE: usize = 4096;

/// One object of a [`MemStore`]: its non-zero 4 KiB pages.
#[derive(Clone, Debug, Default)]
struct MemObject {
    pages: BTreeMap<u64, Box<[u8]>>,
}

/// Calls `f(page_index, offset_in_page, range_in_buffer)` for each page
/// that `len` bytes at `offset` touch.
fn for_each_page(offset: u64, len: usize, mut f: impl FnMut(u64, usize, std::ops::Range<usize>)) {
    let mut done = 0usize;
    while done < len {
        let pos = offset + done as u64;
        let page = pos / PAGE as u64;
        let in_page = (pos % PAGE as u64) as usize;
        let n = (PAGE - in_page).min(len - done);
        f(page, in_page, done..done + n);
        done += n;
    }
}

impl MemObject {
    fn read(&self, offset: u64, buf: &mut [u8]) {
        for_each_page(offset, buf.len(), |page, at, range| {
            let out = &mut buf[range];
            match self.pages.get(&page) {
                Some(p) => out.copy_from_slice(&p[at..at + out.len()]),
                None => out.fill(0),
            }
        });
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        for_each_page(offset, data.len(), |page, at, range| {
            let src = &data[range];
            match self.pages.get_mut(&page) {
                Some(p) => {
                    p[at..at + src.len()].copy_from_slice(src);
                    if p.iter().all(|&b| b == 0) {
                        self.pages.remove(&page);
                    }
                }
                None if src.iter().all(|&b| b == 0) => {}
                None => {
                    let mut p = vec![0u8; PAGE].into_boxed_slice();
                    p[at..at + src.len()].copy_from_slice(src);
                    self.pages.insert(page, p);
                }
            }
        });
    }
}

/// Objects in memory, in 4 KiB pages of which only the non-zero ones are
/// kept.
///
/// Pages rather than one `Vec` per object: an inode's reference counts
/// (`gref`) start 4 MB into the object, so a `Vec` up to the highest written
/// byte would cost megabytes per inode, while pages cost a few KB.
#[derive(Clone, Debug, Default)]
pub struct MemStore {
    objects: HashMap<Oid, MemObject>,
    meta: Option<Vec<u8>>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// How many objects exist.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether no object exists.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}

impl Store for MemStore {
    fn read(&self, oid: Oid, offset: u64, buf: &mut [u8]) -> io::Result<bool> {
        match self.objects.get(&oid) {
            Some(o) => {
                o.read(offset, buf);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn write(&mut self, oid: Oid, offset: u64, data: &[u8]) -> io::Result<bool> {
        match self.objects.get_mut(&oid) {
            Some(o) => {
                o.write(offset, data);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn create(&mut self, oid: Oid, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut o = MemObject::default();
        o.write(offset, data);
        self.objects.insert(oid, o);
        Ok(())
    }

    fn remove(&mut self, oid: Oid) -> io::Result<bool> {
        Ok(self.objects.remove(&oid).is_some())
    }

    fn exists(&self, oid: Oid) -> io::Result<bool> {
        Ok(self.objects.contains_key(&oid))
    }

    fn list(&self) -> io::Result<Vec<Oid>> {
        Ok(self.objects.keys().copied().collect())
    }

    fn used_bytes(&self) -> u64 {
        let pages: usize = self.objects.values().map(|o| o.pages.len()).sum();
        (pages * PAGE) as u64
    }

    fn load_meta(&self) -> io::Result<Option<Vec<u8>>> {
        Ok(self.meta.clone())
    }

    fn save_meta(&mut self, meta: &[u8]) -> io::Result<()> {
        self.meta = Some(meta.to_vec());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_past_the_extent_are_zero_and_zero_pages_cost_nothing() {
        let mut s = MemStore::new();
        let oid = Oid(1);
        s.create(oid, 5000, b"abc").unwrap();
        let mut buf = [0xffu8; 10];
        assert!(s.read(oid, 4998, &mut buf).unwrap());
        assert_eq!(&buf, b"\0\0abc\0\0\0\0\0");
        assert_eq!(s.used_bytes(), PAGE as u64);
        s.write(oid, 5000, &[0, 0, 0]).unwrap();
        assert_eq!(s.used_bytes(), 0);
        assert!(s.exists(oid).unwrap());
        assert!(!s.read(Oid(2), 0, &mut buf).unwrap());
    }
}
