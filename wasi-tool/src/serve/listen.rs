//! Where NBD clients connect: a TCP port, or natively a Unix socket; and
//! the byte stream of one client either way.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};

use crate::error::CliError;

/// A listening socket.
pub enum Listener {
    /// `--listen HOST:PORT`.
    Tcp(TcpListener),
    /// `--socket PATH`.
    #[cfg(unix)]
    Unix(std::os::unix::net::UnixListener, std::path::PathBuf),
}

/// One client's connection.
pub enum Stream {
    /// Over TCP.
    Tcp(TcpStream),
    /// Over a Unix socket.
    #[cfg(unix)]
    Unix(std::os::unix::net::UnixStream),
}

impl Listener {
    /// Listen on HOST:PORT.
    pub fn tcp(addr: &str) -> Result<Listener, CliError> {
        let l = TcpListener::bind(addr)
            .map_err(|e| CliError::msg(format!("cannot listen on {addr}: {e}")))?;
        let _ = l.set_nonblocking(true);
        Ok(Listener::Tcp(l))
    }

    /// Listen on a Unix socket at `path`, which must not exist yet.
    #[cfg(unix)]
    pub fn unix(path: &str) -> Result<Listener, CliError> {
        let l = std::os::unix::net::UnixListener::bind(path)
            .map_err(|e| CliError::msg(format!("cannot listen on socket {path}: {e}")))?;
        let _ = l.set_nonblocking(true);
        Ok(Listener::Unix(l, path.into()))
    }

    /// Unix sockets are not to be had in the WASI component.
    #[cfg(not(unix))]
    pub fn unix(path: &str) -> Result<Listener, CliError> {
        Err(CliError::msg(format!(
            "cannot listen on socket {path}: Unix sockets are not available here; use --listen"
        )))
    }

    /// How URIs name it: `nbd://HOST:PORT/` or `nbd+unix:///` with
    /// `?socket=PATH` after the export name.
    pub fn uri(&self, export: &str) -> String {
        match self {
            Listener::Tcp(l) => match l.local_addr() {
                Ok(a) if a.is_ipv6() => format!("nbd://[{}]:{}/{export}", a.ip(), a.port()),
                Ok(a) => format!("nbd://{}:{}/{export}", a.ip(), a.port()),
                Err(_) => format!("nbd://?/{export}"),
            },
            #[cfg(unix)]
            Listener::Unix(_, p) => format!("nbd+unix:///{export}?socket={}", p.display()),
        }
    }

    /// Take one waiting connection, if any; with the peer for messages.
    pub fn accept(&self) -> io::Result<Option<(Stream, String)>> {
        let got = match self {
            Listener::Tcp(l) => l.accept().map(|(s, a)| {
                let _ = s.set_nodelay(true);
                (Stream::Tcp(s), a.to_string())
            }),
            #[cfg(unix)]
            Listener::Unix(l, p) => l
                .accept()
                .map(|(s, _)| (Stream::Unix(s), p.display().to_string())),
        };
        match got {
            Ok((s, peer)) => {
                s.set_nonblocking()?;
                Ok(Some((s, peer)))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The descriptor, for the readiness loop.
    pub fn fd(&self) -> RawFd {
        match self {
            Listener::Tcp(l) => l.as_raw_fd(),
            #[cfg(unix)]
            Listener::Unix(l, _) => l.as_raw_fd(),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Listener::Unix(_, p) = self {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Stream {
    fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nonblocking(true),
            #[cfg(unix)]
            Stream::Unix(s) => s.set_nonblocking(true),
        }
    }

    /// The descriptor, for the readiness loop.
    pub fn fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            #[cfg(unix)]
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            #[cfg(unix)]
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            #[cfg(unix)]
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
