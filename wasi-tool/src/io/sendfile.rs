//! Dense chunks of a regular input file go from the page cache to the socket
//! with `sendfile(2)` instead of being read into the tool and written out
//! again: import then copies nothing through user space. Whether a chunk
//! is dense is decided from its first and last 4 KiB blocks alone, which
//! is all the zero checks of import would look at for such a chunk. Linux
//! only; elsewhere (and in WASI) import reads every chunk.

use std::fs::File;
use std::io;
use std::net::TcpStream;

use sheepdog_core::sparse::BLOCK;

/// A regular input file whose dense chunks can be sent straight from it.
pub struct Source {
    file: File,
    len: u64,
}

impl Source {
    /// For `file` (a handle of its own; the caller's position is not used),
    /// when this platform can send from files.
    pub fn of(file: &File) -> Option<Source> {
        if !cfg!(target_os = "linux") {
            return None;
        }
        let meta = file.metadata().ok()?;
        if !meta.is_file() {
            return None;
        }
        Some(Source {
            file: file.try_clone().ok()?,
            len: meta.len(),
        })
    }

    /// The file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// If the chunk of up to `want` bytes at `pos` starts and ends with
    /// non-zero 4 KiB blocks, its length: it is sent from the file as it
    /// is. `None` when it must be read (zeros at either end, or the end of
    /// the file).
    pub fn dense(&self, pos: u64, want: usize) -> io::Result<Option<usize>> {
        let n = (want as u64).min(self.len.saturating_sub(pos)) as usize;
        if n == 0 {
            return Ok(None);
        }
        let mut block = [0u8; BLOCK];
        let first = BLOCK.min(n);
        if !self.block_has_data(pos, &mut block[..first])? {
            return Ok(None);
        }
        let last = (n - 1) / BLOCK * BLOCK;
        if last > 0 && !self.block_has_data(pos + last as u64, &mut block[..n - last])? {
            return Ok(None);
        }
        Ok(Some(n))
    }

    /// Whether the `buf.len()` bytes at `pos` are there and not all zeros.
    fn block_has_data(&self, pos: u64, buf: &mut [u8]) -> io::Result<bool> {
        let mut got = 0;
        while got < buf.len() {
            match read_at(&self.file, &mut buf[got..], pos + got as u64) {
                Ok(0) => return Ok(false),
                Ok(k) => got += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(!sheepdog_core::sparse::is_zero(buf))
    }
}

#[cfg(unix)]
fn read_at(f: &File, buf: &mut [u8], pos: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(f, buf, pos)
}

#[cfg(not(unix))]
fn read_at(_: &File, _: &mut [u8], _: u64) -> io::Result<usize> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Send up to `len` bytes of `file` from `offset` to `sock` with one
/// `sendfile(2)`; how many went. A non-blocking socket that is full gives
/// `WouldBlock`; a file that ends early is `UnexpectedEof`.
#[cfg(target_os = "linux")]
pub fn send_some(sock: &TcpStream, file: &File, offset: u64, len: usize) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut off = libc::off_t::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
    loop {
        // SAFETY: both descriptors stay open for the call (they are
        // borrowed), and `off` is a valid, exclusively borrowed off_t that
        // sendfile advances.
        let r = unsafe { libc::sendfile(sock.as_raw_fd(), file.as_raw_fd(), &mut off, len) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if r == 0 && len > 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        return Ok(r as usize);
    }
}

/// Send `len` bytes of `file` from `offset` to a blocking `sock`.
#[cfg(all(test, target_os = "linux"))]
pub fn send(sock: &TcpStream, file: &File, offset: u64, len: usize) -> io::Result<()> {
    let mut done = 0;
    while done < len {
        done += send_some(sock, file, offset + done as u64, len - done)?;
    }
    Ok(())
}

/// Never called: `Source::of` is `None` off Linux.
#[cfg(not(target_os = "linux"))]
pub fn send_some(_: &TcpStream, _: &File, _: u64, _: usize) -> io::Result<usize> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    fn file_with(data: &[u8]) -> (tempfile_path::Guard, File) {
        let g = tempfile_path::Guard::new();
        std::fs::write(&g.0, data).unwrap();
        let f = File::open(&g.0).unwrap();
        (g, f)
    }

    /// A file path removed on drop (std only).
    mod tempfile_path {
        pub struct Guard(pub std::path::PathBuf);
        impl Guard {
            pub fn new() -> Guard {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let n = N.fetch_add(1, Ordering::SeqCst);
                Guard(
                    std::env::temp_dir()
                        .join(format!("sheep-tool-sendfile-{}-{n}", std::process::id())),
                )
            }
        }
        impl Drop for Guard {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    #[test]
    fn dense_looks_at_the_first_and_last_blocks() {
        let mut data = vec![7u8; 64 << 10];
        data[20_000..30_000].fill(0); // zeros inside do not matter
        data[60 << 10..].fill(0); // the last 4 KiB block is zeros
        let (_g, f) = file_with(&data);
        let s = Source::of(&f).unwrap();
        assert_eq!(s.dense(0, 32 << 10).unwrap(), Some(32 << 10));
        assert_eq!(s.dense(0, 60 << 10).unwrap(), Some(60 << 10));
        // Ends in a zero block, or starts in one: read instead.
        assert_eq!(s.dense(0, 64 << 10).unwrap(), None);
        assert_eq!(s.dense(60 << 10, 4096).unwrap(), None);
        assert_eq!(s.dense(16 << 10, 8 << 10).unwrap(), None);
        // A last block shorter than 4 KiB counts as the last block.
        assert_eq!(s.dense(0, 62_000).unwrap(), None);
        assert_eq!(s.dense(0, 58_000).unwrap(), Some(58_000));
        // At the end of the file: what is left, or nothing.
        let (_g2, f2) = file_with(&[1u8; 10_000]);
        let s2 = Source::of(&f2).unwrap();
        assert_eq!(s2.dense(0, 1 << 20).unwrap(), Some(10_000));
        assert_eq!(s2.dense(8192, 1 << 20).unwrap(), Some(10_000 - 8192));
        assert_eq!(s2.dense(10_000, 4096).unwrap(), None);
    }

    #[test]
    fn send_moves_exactly_the_range() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (_g, f) = file_with(&data);
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut tx = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut rx, _) = l.accept().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            rx.read_to_end(&mut got).unwrap();
            got
        });
        tx.write_all(b"head").unwrap();
        send(&tx, &f, 1000, 250_000).unwrap();
        let short = send(&tx, &f, 290_000, 20_000).unwrap_err();
        assert_eq!(short.kind(), io::ErrorKind::UnexpectedEof);
        drop(tx);
        let got = reader.join().unwrap();
        assert_eq!(&got[..4], b"head");
        assert!(got[4..250_004] == data[1000..251_000]);
        // What was there before the end is sent, then the error.
        assert!(got[250_004..] == data[290_000..]);
    }
}
