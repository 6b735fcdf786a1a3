//! The output file of an export: sized up front and written at offsets, so
//! that chunks land as they complete and holes stay holes. Natively this is
//! `pwrite`; under WASI the file is opened through the `wasi` crate and
//! each chunk is one `descriptor.write`, where std's path would cut it into
//! 4 KiB stream writes.

use std::fs::File;
use std::io;

/// A file written at offsets.
pub enum OutFile {
    /// Through std.
    Std(File),
    /// Through a WASI descriptor.
    #[cfg(target_os = "wasi")]
    Wasi(wasi_fs::Descriptor),
}

impl OutFile {
    /// Create or truncate `path` and size it to `size` bytes (all holes).
    pub fn create(path: &str, size: u64) -> io::Result<OutFile> {
        #[cfg(target_os = "wasi")]
        if let Some(d) = wasi_fs::create(path, size)? {
            return Ok(OutFile::Wasi(d));
        }
        let f = File::create(path)?;
        f.set_len(size)?;
        Ok(OutFile::Std(f))
    }

    /// Write all of `buf` at `offset`.
    pub fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        match self {
            #[cfg(unix)]
            OutFile::Std(f) => std::os::unix::fs::FileExt::write_all_at(f, buf, offset),
            #[cfg(not(unix))]
            OutFile::Std(f) => {
                use std::io::{Seek, SeekFrom, Write};
                f.seek(SeekFrom::Start(offset))?;
                f.write_all(buf)
            }
            #[cfg(target_os = "wasi")]
            OutFile::Wasi(d) => wasi_fs::write_all_at(d, buf, offset),
        }
    }
}

#[cfg(target_os = "wasi")]
mod wasi_fs {
    use std::io;
    use std::path::{Component, Path, PathBuf};

    pub use wasi::filesystem::types::Descriptor;
    use wasi::filesystem::types::{DescriptorFlags, ErrorCode, OpenFlags, PathFlags};

    fn err(e: ErrorCode) -> io::Error {
        let kind = match e {
            ErrorCode::NoEntry => io::ErrorKind::NotFound,
            ErrorCode::Access | ErrorCode::NotPermitted | ErrorCode::ReadOnly => {
                io::ErrorKind::PermissionDenied
            }
            ErrorCode::IsDirectory => io::ErrorKind::InvalidInput,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, format!("{e:?}"))
    }

    /// The preopened directory that holds `path`, and the path inside it;
    /// `None` when no preopen does (std then reports the error).
    fn resolve(path: &str) -> Option<(Descriptor, String)> {
        let path = Path::new(path);
        let mut best: Option<(Descriptor, PathBuf, usize)> = None;
        for (dir, name) in wasi::filesystem::preopens::get_directories() {
            let base = Path::new(&name);
            let rel = if path.is_absolute() == base.is_absolute() {
                if base == Path::new(".") {
                    Some(path.to_path_buf())
                } else {
                    path.strip_prefix(base).ok().map(Path::to_path_buf)
                }
            } else {
                None
            };
            if let Some(rel) = rel {
                let depth = base.components().count();
                if best.as_ref().is_none_or(|b| depth > b.2) {
                    best = Some((dir, rel, depth));
                }
            }
        }
        let (dir, rel, _) = best?;
        if rel.components().any(|c| matches!(c, Component::ParentDir)) {
            return None;
        }
        Some((dir, rel.to_str()?.trim_start_matches("./").to_owned()))
    }

    /// Create or truncate `path` at `size` bytes.
    pub fn create(path: &str, size: u64) -> io::Result<Option<Descriptor>> {
        let Some((dir, rel)) = resolve(path) else {
            return Ok(None);
        };
        let d = dir
            .open_at(
                PathFlags::SYMLINK_FOLLOW,
                &rel,
                OpenFlags::CREATE | OpenFlags::TRUNCATE,
                DescriptorFlags::WRITE,
            )
            .map_err(err)?;
        d.set_size(size).map_err(err)?;
        Ok(Some(d))
    }

    /// Write all of `buf` at `offset`.
    pub fn write_all_at(d: &Descriptor, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            let n = d.write(buf, offset).map_err(err)? as usize;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            buf = &buf[n..];
            offset += n as u64;
        }
        Ok(())
    }
}
