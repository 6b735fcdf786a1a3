//! The holes of a sparse input file, found with `lseek(SEEK_DATA)`, so that
//! import skips them without reading (a 4 GiB image with 256 MiB of data
//! reads 256 MiB). Where the platform has no such call (WASI) nothing is
//! skipped and zeros are found by reading.

#[cfg(unix)]
mod imp {
    use std::fs::File;
    use std::io;
    use std::os::fd::{AsRawFd, RawFd};

    /// Hole finder over a file that is read sequentially from offset 0.
    pub struct Holes {
        fd: RawFd,
        pos: u64,
        len: u64,
    }

    fn lseek(fd: RawFd, off: u64, whence: i32) -> io::Result<u64> {
        let off = i64::try_from(off).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: lseek only reads its arguments; `fd` is open for as long
        // as the File it came from, which the caller keeps for the import.
        let r = unsafe { libc::lseek(fd, off, whence) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r as u64)
        }
    }

    impl Holes {
        /// For a regular file at offset 0; the file must outlive the value.
        pub fn of(f: &File) -> Option<Holes> {
            let len = f.metadata().ok()?.len();
            Some(Holes {
                fd: f.as_raw_fd(),
                pos: 0,
                len,
            })
        }

        /// If the next `want` bytes (or what is left of the file) are a
        /// hole, move past them and return how many; else leave the
        /// position as it was.
        pub fn skip_hole(&mut self, want: u64) -> io::Result<Option<u64>> {
            let n = want.min(self.len.saturating_sub(self.pos));
            if n == 0 {
                return Ok(None);
            }
            let next_data = match lseek(self.fd, self.pos, libc::SEEK_DATA) {
                Ok(d) => d,
                // No data after pos: the rest is a hole.
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) => self.len,
                // No SEEK_DATA here: read everything.
                Err(_) => self.pos,
            };
            if next_data >= self.pos + n {
                self.pos += n;
                lseek(self.fd, self.pos, libc::SEEK_SET)?;
                Ok(Some(n))
            } else {
                lseek(self.fd, self.pos, libc::SEEK_SET)?;
                Ok(None)
            }
        }

        /// `n` bytes were read.
        pub fn advance(&mut self, n: u64) {
            self.pos += n;
        }
    }
}

#[cfg(not(unix))]
mod imp {
    use std::fs::File;
    use std::io;

    /// No hole finding on this platform.
    pub struct Holes;

    impl Holes {
        /// Never: zeros are found by reading.
        pub fn of(_: &File) -> Option<Holes> {
            None
        }

        /// Never a hole.
        pub fn skip_hole(&mut self, _: u64) -> io::Result<Option<u64>> {
            Ok(None)
        }

        /// Nothing to track.
        pub fn advance(&mut self, _: u64) {}
    }
}

pub use imp::Holes;
