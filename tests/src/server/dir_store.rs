//! [`DirStore`]: objects as sparse files in a directory, one file per
//! object named by its oid in hex (`806acfef00000000`).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use sheepdog_core::oid::Oid;

use super::store::Store;

/// Block size below which all-zero runs are left as holes on create.
const BLOCK: usize = 4096;
/// File holding the cluster's bookkeeping.
const META_FILE: &str = "cluster.meta";

/// Objects as sparse files under `<root>/obj/`.
///
/// CREATE writes a temporary file and renames it into place, like sheep's
/// plain store, so an object is replaced atomically. All-zero 4 KiB blocks
/// are skipped (left as holes) when an object is created.
#[derive(Debug)]
pub struct DirStore {
    root: PathBuf,
}

fn is_not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

impl DirStore {
    /// Open (creating if needed) a store in `root`.
    pub fn open(root: impl AsRef<Path>) -> io::Result<DirStore> {
        let root = root.as_ref().to_path_buf();
        fs::create_dir_all(root.join("obj"))?;
        Ok(DirStore { root })
    }

    fn path(&self, oid: Oid) -> PathBuf {
        self.root.join("obj").join(format!("{:016x}", oid.0))
    }

    fn tmp_path(&self, oid: Oid) -> PathBuf {
        self.root.join("obj").join(format!("{:016x}.tmp", oid.0))
    }
}

/// Read as much as the file holds at `offset`, zero-filling the rest.
fn read_full_at(f: &File, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf[done..].fill(0);
    Ok(())
}

impl Store for DirStore {
    fn read(&self, oid: Oid, offset: u64, buf: &mut [u8]) -> io::Result<bool> {
        let f = match File::open(self.path(oid)) {
            Ok(f) => f,
            Err(e) if is_not_found(&e) => return Ok(false),
            Err(e) => return Err(e),
        };
        read_full_at(&f, offset, buf)?;
        Ok(true)
    }

    fn write(&mut self, oid: Oid, offset: u64, data: &[u8]) -> io::Result<bool> {
        let f = match OpenOptions::new().write(true).open(self.path(oid)) {
            Ok(f) => f,
            Err(e) if is_not_found(&e) => return Ok(false),
            Err(e) => return Err(e),
        };
        f.write_all_at(data, offset)?;
        Ok(true)
    }

    fn create(&mut self, oid: Oid, offset: u64, data: &[u8]) -> io::Result<()> {
        let tmp = self.tmp_path(oid);
        let f = File::create(&tmp)?;
        let mut at = 0;
        while at < data.len() {
            // Align blocks to the object, not to the payload.
            let pos = offset + at as u64;
            let n = (BLOCK - (pos % BLOCK as u64) as usize).min(data.len() - at);
            let chunk = &data[at..at + n];
            if chunk.iter().any(|&b| b != 0) {
                f.write_all_at(chunk, pos)?;
            }
            at += n;
        }
        f.set_len(offset + data.len() as u64)?;
        drop(f);
        fs::rename(&tmp, self.path(oid))
    }

    fn remove(&mut self, oid: Oid) -> io::Result<bool> {
        match fs::remove_file(self.path(oid)) {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn exists(&self, oid: Oid) -> io::Result<bool> {
        match fs::metadata(self.path(oid)) {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn list(&self) -> io::Result<Vec<Oid>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(self.root.join("obj"))? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.len() != 16 {
                continue;
            }
            if let Ok(v) = u64::from_str_radix(name, 16) {
                out.push(Oid(v));
            }
        }
        Ok(out)
    }

    fn used_bytes(&self) -> u64 {
        let Ok(dir) = fs::read_dir(self.root.join("obj")) else {
            return 0;
        };
        dir.filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.blocks() * 512)
            .sum()
    }

    fn load_meta(&self) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.root.join(META_FILE)) {
            Ok(v) => Ok(Some(v)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn save_meta(&mut self, meta: &[u8]) -> io::Result<()> {
        let tmp = self.root.join("cluster.meta.tmp");
        fs::write(&tmp, meta)?;
        fs::rename(tmp, self.root.join(META_FILE))
    }
}
