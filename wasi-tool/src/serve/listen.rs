//! Where NBD clients connect: a TCP port, or natively a Unix socket (made
//! here, or handed over by systemd's socket activation); and the byte
//! stream of one client either way.

use std::io::{self, IoSlice, Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};

use crate::error::CliError;

/// A listening socket.
pub enum Listener {
    /// `--listen HOST:PORT`.
    Tcp(TcpListener),
    /// `--socket PATH` (removed at exit), or a socket handed over
    /// (`None`: left to whoever made it).
    #[cfg(unix)]
    Unix(
        std::os::unix::net::UnixListener,
        String,
        Option<std::path::PathBuf>,
    ),
}

/// A client just accepted.
pub struct Accepted {
    /// Its connection.
    pub stream: Stream,
    /// Who it is, for messages.
    pub peer: String,
    /// Its address (TCP only), for `--allow`.
    pub ip: Option<IpAddr>,
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
        Ok(Listener::Unix(l, path.to_owned(), Some(path.into())))
    }

    /// A listening TCP socket handed over by a service manager.
    #[cfg(unix)]
    pub fn from_tcp(l: TcpListener) -> Listener {
        let _ = l.set_nonblocking(true);
        Listener::Tcp(l)
    }

    /// A listening Unix socket handed over by a service manager: not
    /// removed at exit.
    #[cfg(unix)]
    pub fn from_unix(l: std::os::unix::net::UnixListener) -> Listener {
        let _ = l.set_nonblocking(true);
        let shown = l
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
            .unwrap_or_else(|| "(socket)".to_owned());
        Listener::Unix(l, shown, None)
    }

    /// The address of a TCP listener that is not on loopback: clients
    /// from other machines can reach it.
    pub fn beyond_loopback(&self) -> Option<std::net::SocketAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok().filter(|a| !a.ip().is_loopback()),
            #[cfg(unix)]
            Listener::Unix(..) => None,
        }
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
            Listener::Unix(_, shown, _) => format!("nbd+unix:///{export}?socket={shown}"),
        }
    }

    /// Take one waiting connection, if any.
    pub fn accept(&self) -> io::Result<Option<Accepted>> {
        let got = match self {
            Listener::Tcp(l) => l.accept().map(|(s, a)| {
                let _ = s.set_nodelay(true);
                Accepted {
                    stream: Stream::Tcp(s),
                    peer: a.to_string(),
                    ip: Some(a.ip()),
                }
            }),
            #[cfg(unix)]
            Listener::Unix(l, shown, _) => l.accept().map(|(s, _)| Accepted {
                stream: Stream::Unix(s),
                peer: shown.clone(),
                ip: None,
            }),
        };
        match got {
            Ok(a) => {
                a.stream.set_nonblocking()?;
                Ok(Some(a))
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
            Listener::Unix(l, ..) => l.as_raw_fd(),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Listener::Unix(_, _, Some(p)) = self {
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

    /// One `writev` for many reply pieces, on either kind of socket.
    /// Under WASI a write of the first piece only: wasi-libc's `writev` on
    /// a socket waits until all is written, non-blocking or not, and one
    /// client that does not read would hold the whole server.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            #[cfg(not(target_os = "wasi"))]
            Stream::Tcp(s) => s.write_vectored(bufs),
            #[cfg(target_os = "wasi")]
            Stream::Tcp(s) => match bufs.iter().find(|b| !b.is_empty()) {
                Some(b) => s.write(b),
                None => Ok(0),
            },
            #[cfg(unix)]
            Stream::Unix(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
