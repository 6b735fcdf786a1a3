//! Reads BYTES from a TCP server in 456 KiB reads, as export reads replies,
//! and exits: what reading a socket costs, natively and as a WASI component
//! under wasmtime, without anything else of sheep-tool. `bench/socket-floor`
//! runs it against a local sender.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::process::exit;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(bytes)) = (args.next(), args.next()) else {
        eprintln!("usage: read-socket HOST:PORT BYTES");
        exit(2);
    };
    let Ok(total) = bytes.parse::<u64>() else {
        eprintln!("error: bad byte count '{bytes}'");
        exit(2);
    };
    if let Err(e) = read(&addr, total) {
        eprintln!("error: {addr}: {e}");
        exit(1);
    }
}

/// Ask the sender for `total` bytes and read them.
fn read(addr: &str, total: u64) -> io::Result<()> {
    let mut s = TcpStream::connect(addr)?;
    s.write_all(&total.to_le_bytes())?;
    let mut buf = vec![0u8; 456 << 10];
    let mut got = 0u64;
    while got < total {
        let want = (buf.len() as u64).min(total - got) as usize;
        s.read_exact(&mut buf[..want])?;
        got += want as u64;
    }
    Ok(())
}
