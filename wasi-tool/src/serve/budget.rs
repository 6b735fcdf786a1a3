//! How much of the server one connection may hold. Every connection has
//! a share of its own: requests in flight, and bytes in buffers and
//! replies (a read's buffer from the moment it is taken, a write's
//! payload, replies not yet sent). A connection at its share is read no
//! more, so TCP holds its client back; it never takes another's share.
//! The server-wide figure only caps the sum: while it is reached, only
//! connections holding more than their fair part of it (the figure
//! divided among the connections in transmission) stop, which are the
//! ones that do not read their replies. So a paused VM or a stuck backup
//! never stalls the others.
//!
//! In negotiation a client is read only while few of its replies are
//! unsent: a flood of options whose replies are never read costs a few
//! KiB, not memory without end.

/// Requests one connection may have in flight (QEMU keeps 16, nbdcopy 64).
pub const CONN_INFLIGHT: usize = 64;
/// Bytes one connection may hold before it is read no more (a request of
/// up to 32 MiB can come on top).
pub const CONN_HELD: usize = 32 << 20;
/// Bytes all connections together hold before the ones over their fair
/// part of it are read no more.
pub const SERVER_HELD: usize = 128 << 20;
/// Unsent reply bytes above which a negotiating client is read no more.
pub const NEGOTIATION_UNSENT: usize = 8 << 10;

/// The largest buffer the allocator hands out from its heap rather than
/// from fresh pages of their own (glibc's ceiling for it): every request
/// the server takes (32 MiB at most) fits.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const HEAP_BUFFER_MAX: usize = 32 << 20;

/// Keep freed request buffers for the next requests, up to the server's
/// figure. Left to itself glibc gives a read's 2 MiB buffer fresh pages
/// of their own and returns them when the reply is sent, so every read
/// pays a page fault per 4 KiB and a clear of each page: measured with
/// `perf` on 256 MiB sequential reads through serve, a fifth of the
/// server's CPU (0.53-0.60 ms per MiB before, 0.44-0.50 after). Memory
/// the server already used stays its own (never more than it may hold at
/// once). Only where the allocator is glibc's; elsewhere nothing changes.
pub fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets the allocator's thresholds; called before
    // the server allocates its buffers, and on failure nothing changes.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, HEAP_BUFFER_MAX as libc::c_int);
        libc::mallopt(libc::M_TRIM_THRESHOLD, SERVER_HELD as libc::c_int);
    }
}

/// Whether a connection in transmission that holds `own` bytes and has
/// `inflight` requests in flight may take another request, while all
/// connections hold `total` bytes and `active` are in transmission.
pub fn may_take(own: usize, inflight: usize, total: usize, active: usize) -> bool {
    if inflight >= CONN_INFLIGHT || own >= CONN_HELD {
        return false;
    }
    total < SERVER_HELD || own < SERVER_HELD / active.max(1)
}

/// Whether a negotiating connection with `unsent` reply bytes waiting may
/// be read.
pub fn may_negotiate(unsent: usize) -> bool {
    unsent <= NEGOTIATION_UNSENT
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn a_connection_stops_at_its_own_share() {
        assert!(may_take(0, 0, 0, 1));
        assert!(may_take(CONN_HELD - 1, CONN_INFLIGHT - 1, 0, 1));
        assert!(!may_take(CONN_HELD, 0, 0, 1));
        assert!(!may_take(0, CONN_INFLIGHT, 0, 1));
    }

    #[test]
    fn clients_that_hog_replies_never_stall_the_others() {
        // Four connections hold their whole share in replies nobody
        // reads: the server is at its figure. They stop; a fifth, and a
        // modest one, go on.
        let total = 4 * CONN_HELD;
        assert!(total >= SERVER_HELD);
        assert!(!may_take(CONN_HELD - 1, 1, total, 5), "a hog over its part");
        assert!(may_take(0, 0, total, 5), "a new client");
        assert!(may_take(4 * MIB, 16, total + 4 * MIB, 5), "a working VM");
        // Its fair part shrinks as clients come, and never to nothing.
        assert!(may_take(0, 0, total, 10_000));
    }

    #[test]
    fn negotiation_is_read_while_few_replies_wait() {
        assert!(may_negotiate(0));
        assert!(may_negotiate(NEGOTIATION_UNSENT));
        assert!(!may_negotiate(NEGOTIATION_UNSENT + 1));
    }
}
