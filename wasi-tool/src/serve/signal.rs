//! SIGINT and SIGTERM ask the server to stop: the handler only sets a
//! flag, and the loop (whose wait a signal interrupts) winds down.
//! The WASI component has no signals; it stops when wasmtime is killed.

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

/// Whether a stop was asked for.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

#[cfg(unix)]
extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Install the handlers.
#[cfg(unix)]
pub fn install() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: sigaction with a zeroed mask and a handler that only
        // stores to an atomic, which is async-signal-safe. No SA_RESTART:
        // the loop's poll returns EINTR and looks at the flag.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = handler;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(sig, &act, std::ptr::null_mut());
        }
    }
}

/// Nothing to install without signals.
#[cfg(not(unix))]
pub fn install() {}
