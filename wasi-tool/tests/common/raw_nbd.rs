//! A raw NBD client for the tests that play careless and hostile clients:
//! the fixed newstyle handshake, options sent without reading their
//! replies, and simple-reply transmission.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
pub const OPT_LIST: u32 = 3;
pub const OPT_GO: u32 = 7;

/// An option's bytes.
pub fn option(code: u32, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + data.len());
    v.extend_from_slice(&IHAVEOPT.to_be_bytes());
    v.extend_from_slice(&code.to_be_bytes());
    v.extend_from_slice(&(data.len() as u32).to_be_bytes());
    v.extend_from_slice(data);
    v
}

/// A READ request's bytes.
pub fn read_request(cookie: u64, offset: u64, len: u32) -> [u8; 28] {
    let mut b = [0u8; 28];
    b[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
    b[6..8].copy_from_slice(&0u16.to_be_bytes());
    b[8..16].copy_from_slice(&cookie.to_be_bytes());
    b[16..24].copy_from_slice(&offset.to_be_bytes());
    b[24..28].copy_from_slice(&len.to_be_bytes());
    b
}

/// Connect to `port` and do the greeting and the client flags.
pub fn greeted(port: u16) -> io::Result<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut g = [0u8; 18];
    s.read_exact(&mut g)?;
    assert_eq!(&g[..8], b"NBDMAGIC");
    s.write_all(&3u32.to_be_bytes())?;
    Ok(s)
}

/// Connect and negotiate `export` with NBD_OPT_GO (simple replies): the
/// connection in transmission.
pub fn opened(port: u16, export: &str) -> io::Result<TcpStream> {
    let mut s = greeted(port)?;
    let mut d = Vec::new();
    d.extend_from_slice(&(export.len() as u32).to_be_bytes());
    d.extend_from_slice(export.as_bytes());
    d.extend_from_slice(&0u16.to_be_bytes());
    s.write_all(&option(OPT_GO, &d))?;
    loop {
        let mut h = [0u8; 20];
        s.read_exact(&mut h)?;
        let kind = u32::from_be_bytes(h[12..16].try_into().unwrap());
        let len = u32::from_be_bytes(h[16..20].try_into().unwrap()) as usize;
        let mut body = vec![0u8; len];
        s.read_exact(&mut body)?;
        match kind {
            1 => return Ok(s),
            3 => {}
            e => {
                return Err(io::Error::other(format!(
                    "GO refused ({e:#x}): {}",
                    String::from_utf8_lossy(&body)
                )))
            }
        }
    }
}

/// One READ on an open connection, answered with a simple reply.
pub fn read(s: &mut TcpStream, cookie: u64, offset: u64, len: u32) -> io::Result<Vec<u8>> {
    s.write_all(&read_request(cookie, offset, len))?;
    let mut h = [0u8; 16];
    s.read_exact(&mut h)?;
    let error = u32::from_be_bytes(h[4..8].try_into().unwrap());
    if error != 0 {
        return Err(io::Error::other(format!("NBD error {error}")));
    }
    let mut data = vec![0u8; len as usize];
    s.read_exact(&mut data)?;
    Ok(data)
}

/// Write `bytes` over and over until the peer stops taking them for
/// `patience` (it reads no more) or `limit` bytes went out; returns the
/// bytes that went out.
pub fn flood(s: &mut TcpStream, bytes: &[u8], limit: u64, patience: Duration) -> u64 {
    let _ = s.set_write_timeout(Some(patience));
    let mut sent = 0u64;
    while sent < limit {
        match s.write(bytes) {
            Ok(0) | Err(_) => break,
            Ok(n) => sent += n as u64,
        }
    }
    sent
}

/// A process's resident set size, in bytes.
pub fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// How many descriptors a process has open.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}
