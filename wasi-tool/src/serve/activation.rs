//! Socket activation, as systemd, `systemd-socket-activate`, qemu-nbd and
//! nbdkit do it: a service manager that made the listening sockets passes
//! them as descriptors 3, 4, ... with `LISTEN_FDS` saying how many and
//! `LISTEN_PID` saying for which process. Natively only; the WASI component
//! has no inherited descriptors.

use super::listen::Listener;
use crate::error::CliError;

/// The first descriptor handed over (`SD_LISTEN_FDS_START`).
#[cfg(unix)]
const FIRST_FD: i32 = 3;

/// The listeners handed over to this process, if any.
#[cfg(unix)]
pub fn listeners() -> Result<Option<Vec<Listener>>, CliError> {
    use std::os::fd::{FromRawFd, RawFd};

    let (Ok(pid), Ok(fds)) = (std::env::var("LISTEN_PID"), std::env::var("LISTEN_FDS")) else {
        return Ok(None);
    };
    // Meant for another process (a parent's, inherited): not ours.
    if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(None);
    }
    let n: i32 = fds
        .trim()
        .parse()
        .ok()
        .filter(|n| (1..=64).contains(n))
        .ok_or_else(|| CliError::msg(format!("LISTEN_FDS={fds} is not a number of sockets")))?;
    let mut out = Vec::new();
    for fd in FIRST_FD..FIRST_FD + n {
        let family = listening_family(fd).ok_or_else(|| {
            CliError::msg(format!(
                "descriptor {fd} (LISTEN_FDS) is not a listening stream socket"
            ))
        })?;
        // SAFETY: the service manager handed descriptor `fd` to this
        // process to own (LISTEN_PID is ours), it is open and a listening
        // stream socket (checked above), and nothing else in the process
        // takes ownership of it.
        let l = match family {
            libc::AF_INET | libc::AF_INET6 => {
                Listener::from_tcp(unsafe { std::net::TcpListener::from_raw_fd(fd as RawFd) })
            }
            libc::AF_UNIX => Listener::from_unix(unsafe {
                std::os::unix::net::UnixListener::from_raw_fd(fd as RawFd)
            }),
            other => {
                return Err(CliError::msg(format!(
                    "descriptor {fd} (LISTEN_FDS) is a socket of family {other}, not TCP or Unix"
                )))
            }
        };
        out.push(l);
    }
    Ok(Some(out))
}

/// The address family of `fd` if it is a listening stream socket.
#[cfg(unix)]
fn listening_family(fd: i32) -> Option<i32> {
    let get = |opt: libc::c_int| {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `v` and `len` are valid for writes of the sizes given;
        // getsockopt only reads the descriptor number.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        (r == 0).then_some(v)
    };
    let stream = get(libc::SO_TYPE)? == libc::SOCK_STREAM;
    let listening = get(libc::SO_ACCEPTCONN)? != 0;
    (stream && listening)
        .then(|| get(libc::SO_DOMAIN))
        .flatten()
}

/// No descriptors are handed over to the WASI component.
#[cfg(not(unix))]
pub fn listeners() -> Result<Option<Vec<Listener>>, CliError> {
    Ok(None)
}
