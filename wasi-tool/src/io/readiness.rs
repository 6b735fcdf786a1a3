//! One readiness loop over non-blocking sockets, natively and as a WASI
//! component: `poll(2)` on the sockets' descriptors. Under WASI 0.2,
//! wasi-libc's `poll` waits on the sockets' `wasi:io/poll` pollables, so
//! the same code serves both (and, with threads absent there, one process
//! can wait on many connections at once).

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use super::spin::Spin;

/// What to wait for on one descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Want {
    /// The descriptor.
    pub fd: RawFd,
    /// Until bytes can be read (or the peer closed).
    pub read: bool,
    /// Until bytes can be written.
    pub write: bool,
}

/// What one descriptor is ready for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// A read will not block (it may return 0: the peer closed).
    pub read: bool,
    /// A write will not block.
    pub write: bool,
}

/// Wait until one of `wants` is ready or `timeout` has passed (`None`:
/// no limit); `ready` gets their readiness, in order (all false after a
/// timeout).
pub fn wait(wants: &[Want], timeout: Option<Duration>, ready: &mut Vec<Ready>) -> io::Result<()> {
    wait_or_signal(wants, timeout, ready, false)
}

/// As [`wait`], but a signal ends the wait too (all false), so that a loop
/// can act on what its handler set.
pub fn wait_or_signal(
    wants: &[Want],
    timeout: Option<Duration>,
    ready: &mut Vec<Ready>,
    interrupted_returns: bool,
) -> io::Result<()> {
    let mut fds = pollfds(wants);
    poll_once(&mut fds, timeout, interrupted_returns)?;
    readiness(&fds, ready);
    Ok(())
}

/// As [`wait_or_signal`], but first look without sleeping for as long as
/// `spin`'s window (never past `timeout`), and teach `spin` how long the
/// wait took. Between looks the CPU is offered to any other process that
/// is ready to run (the cluster's daemons, the client), so the window
/// keeps the CPU awake without taking it from them. A signal during the
/// window is seen by the sleep after it, or by the caller's next turn.
pub fn wait_polling(
    wants: &[Want],
    timeout: Option<Duration>,
    ready: &mut Vec<Ready>,
    interrupted_returns: bool,
    spin: &mut Spin,
) -> io::Result<()> {
    let start = Instant::now();
    let window = timeout.map_or(spin.window(), |t| t.min(spin.window()));
    let mut fds = pollfds(wants);
    if !window.is_zero() {
        loop {
            if poll_once(&mut fds, Some(Duration::ZERO), interrupted_returns)? > 0 {
                readiness(&fds, ready);
                spin.waited(start.elapsed(), true);
                return Ok(());
            }
            if start.elapsed() >= window {
                break;
            }
            std::thread::yield_now();
        }
    }
    let rest = timeout.map(|t| t.saturating_sub(start.elapsed()));
    let n = poll_once(&mut fds, rest, interrupted_returns)?;
    readiness(&fds, ready);
    spin.waited(start.elapsed(), n > 0);
    Ok(())
}

/// What poll(2) is to wait for, one entry per want.
fn pollfds(wants: &[Want]) -> Vec<libc::pollfd> {
    wants
        .iter()
        .map(|w| libc::pollfd {
            fd: w.fd,
            events: if w.read { libc::POLLIN } else { 0 } | if w.write { libc::POLLOUT } else { 0 },
            revents: 0,
        })
        .collect()
}

/// One poll(2) of `fds` (`None`: no time limit), again after a signal
/// unless `interrupted_returns`; how many are ready (0 after a timeout or
/// a signal, with every `revents` clear).
fn poll_once(
    fds: &mut [libc::pollfd],
    timeout: Option<Duration>,
    interrupted_returns: bool,
) -> io::Result<usize> {
    // Milliseconds, rounded up so that a wait never ends early.
    let ms = match timeout {
        None => -1,
        Some(t) => i32::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX),
    };
    loop {
        // SAFETY: `fds` is a valid, exclusively borrowed array of
        // `fds.len()` pollfd structures for the duration of the call.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
        if interrupted_returns {
            // A signal: let the caller look at what it set.
            for f in fds.iter_mut() {
                f.revents = 0;
            }
            return Ok(0);
        }
    }
}

/// What each descriptor is ready for after a poll; a hang-up or an error
/// counts as both (the next read or write says which).
fn readiness(fds: &[libc::pollfd], ready: &mut Vec<Ready>) {
    let gone = libc::POLLHUP | libc::POLLERR | libc::POLLNVAL;
    ready.clear();
    ready.extend(fds.iter().map(|p| Ready {
        read: p.revents & (libc::POLLIN | gone) != 0,
        write: p.revents & (libc::POLLOUT | gone) != 0,
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    /// Two ends of one loopback TCP connection, and the wait for bytes
    /// at the first.
    fn pair() -> (TcpStream, TcpStream, [Want; 1]) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        let want = [Want {
            fd: a.as_raw_fd(),
            read: true,
            write: false,
        }];
        (a, b, want)
    }

    #[test]
    fn waits_for_bytes_and_says_when_they_are_there() {
        let (a, mut b, want) = pair();
        let mut ready = Vec::new();
        let start = Instant::now();
        wait(&want, Some(Duration::from_millis(30)), &mut ready).unwrap();
        assert!(start.elapsed() >= Duration::from_millis(30), "not early");
        assert_eq!(ready, [Ready::default()], "nothing to read yet");
        b.write_all(b"x").unwrap();
        wait(&want, None, &mut ready).unwrap();
        assert!(ready[0].read);
        let want = [Want {
            fd: a.as_raw_fd(),
            read: false,
            write: true,
        }];
        wait(&want, None, &mut ready).unwrap();
        assert!(ready[0].write, "an empty send buffer takes bytes");
    }

    #[test]
    fn polling_takes_what_is_there_and_sleeps_when_nothing_comes() {
        let (a, mut b, want) = pair();
        let mut ready = Vec::new();
        let mut spin = Spin::new(Duration::from_secs(1));
        for _ in 0..3 {
            b.write_all(b"x").unwrap();
            wait_polling(
                &want,
                Some(Duration::from_secs(5)),
                &mut ready,
                false,
                &mut spin,
            )
            .unwrap();
            assert!(ready[0].read);
            let mut byte = [0u8; 1];
            std::io::Read::read(&mut &a, &mut byte).unwrap();
        }
        assert!(
            spin.window() > Duration::ZERO,
            "answers that come soon open a window"
        );
        // Bytes that come 2 ms after each wait began, within four maxima:
        // the next wait polls.
        let mut spin = Spin::new(Duration::from_secs(1));
        let mut w = b.try_clone().unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(2));
            w.write_all(b"x").unwrap();
        });
        wait_polling(&want, None, &mut ready, false, &mut spin).unwrap();
        assert!(ready[0].read);
        std::io::Read::read(&mut &a, &mut [0u8; 1]).unwrap();
        t.join().unwrap();
        assert_eq!(spin.window(), Duration::from_secs(1));
        let mut spin = Spin::new(Duration::from_millis(10));
        b.write_all(b"x").unwrap();
        wait_polling(&want, None, &mut ready, false, &mut spin).unwrap();
        std::io::Read::read(&mut &a, &mut [0u8; 1]).unwrap();
        assert!(spin.window() > Duration::ZERO);
        let start = Instant::now();
        wait_polling(
            &want,
            Some(Duration::from_millis(30)),
            &mut ready,
            false,
            &mut spin,
        )
        .unwrap();
        assert!(start.elapsed() >= Duration::from_millis(30), "not early");
        assert_eq!(ready, [Ready::default()], "nothing came");
        assert_eq!(
            spin.window(),
            Duration::ZERO,
            "a long wait closes the window"
        );
    }
}
