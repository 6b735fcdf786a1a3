//! Result codes (PROTOCOL.md §6): what each means and what a client does
//! about it.

use core::fmt;

/// What a client should do about a result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResultClass {
    /// The request did what it asked.
    Success,
    /// A well-formed answer about the state of things (no such VDI, the name
    /// exists, locked, no tag ...): report it, do not retry.
    Semantic,
    /// The cluster is busy or changing: retry the same request with backoff.
    Transient,
    /// The VDI changed under the client (it became a snapshot, or the inode
    /// was invalidated): re-resolve the VDI, refresh the inode, resend.
    Reresolve,
    /// The request cannot succeed as sent.
    Fatal,
}

macro_rules! results {
    ($( $(#[$doc:meta])* $name:ident = $code:literal, $wire:literal, $class:ident, $msg:literal; )*) => {
        /// A `result` from a response header. Codes this crate does not know
        /// are kept as [`ResultCode::Unknown`] and classed as fatal.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ResultCode {
            $( $(#[$doc])* $name, )*
            /// Any other code, kept as received.
            Unknown(u32),
        }

        impl ResultCode {
            /// The result for a wire value.
            pub const fn from_u32(code: u32) -> ResultCode {
                match code {
                    $( $code => ResultCode::$name, )*
                    other => ResultCode::Unknown(other),
                }
            }

            /// The wire value.
            pub const fn to_u32(self) -> u32 {
                match self {
                    $( ResultCode::$name => $code, )*
                    ResultCode::Unknown(other) => other,
                }
            }

            /// The protocol's name (`SD_RES_` left off), `UNKNOWN_RESULT` for
            /// unknown codes.
            pub const fn name(self) -> &'static str {
                match self {
                    $( ResultCode::$name => $wire, )*
                    ResultCode::Unknown(_) => "UNKNOWN_RESULT",
                }
            }

            /// What a client should do about it.
            pub const fn class(self) -> ResultClass {
                match self {
                    $( ResultCode::$name => ResultClass::$class, )*
                    ResultCode::Unknown(_) => ResultClass::Fatal,
                }
            }

            /// A sentence a person understands.
            pub const fn message(self) -> &'static str {
                match self {
                    $( ResultCode::$name => $msg, )*
                    ResultCode::Unknown(_) => "the server answered with a result code this client does not know",
                }
            }
        }
    };
}

results! {
    /// The request succeeded.
    Success = 0x00, "SUCCESS", Success, "success";
    /// An unknown error on the server.
    UnknownError = 0x01, "UNKNOWN", Fatal, "unknown error on the server";
    /// The object does not exist.
    NoObj = 0x02, "NO_OBJ", Semantic, "no such object";
    /// An I/O error on the server.
    Eio = 0x03, "EIO", Fatal, "I/O error on the server";
    /// A VDI of that name already exists.
    VdiExist = 0x04, "VDI_EXIST", Semantic, "a VDI with that name already exists";
    /// The server rejected the request's parameters.
    InvalidParms = 0x05, "INVALID_PARMS", Fatal, "the server rejected the request's parameters";
    /// A system error on the server.
    SystemError = 0x06, "SYSTEM_ERROR", Fatal, "system error on the server";
    /// The VDI is locked.
    VdiLocked = 0x07, "VDI_LOCKED", Semantic, "the VDI is locked by another client";
    /// No VDI of that name.
    NoVdi = 0x08, "NO_VDI", Semantic, "no such VDI";
    /// No base VDI (not produced by v1.0).
    NoBaseVdi = 0x09, "NO_BASE_VDI", Semantic, "no such base VDI";
    /// Reading the VDI failed (not produced by v1.0).
    VdiRead = 0x0A, "VDI_READ", Fatal, "the server could not read the VDI";
    /// Writing the VDI failed.
    VdiWrite = 0x0B, "VDI_WRITE", Fatal, "the server could not write the VDI";
    /// Reading the base VDI failed.
    BaseVdiRead = 0x0C, "BASE_VDI_READ", Fatal, "the server could not read the base VDI";
    /// Writing the base VDI failed.
    BaseVdiWrite = 0x0D, "BASE_VDI_WRITE", Fatal, "the server could not write the base VDI";
    /// The VDI exists but not that snapshot.
    NoTag = 0x0E, "NO_TAG", Semantic, "no such snapshot";
    /// The server is starting (not produced by v1.0).
    Startup = 0x0F, "STARTUP", Transient, "the server is starting up";
    /// The VDI is not locked (not produced by v1.0).
    VdiNotLocked = 0x10, "VDI_NOT_LOCKED", Semantic, "the VDI is not locked";
    /// The node is shutting down.
    Shutdown = 0x11, "SHUTDOWN", Transient, "the node is shutting down";
    /// The server is out of memory.
    NoMem = 0x12, "NO_MEM", Transient, "the server is out of memory";
    /// No free VDI id or attribute slot is left.
    FullVdi = 0x13, "FULL_VDI", Fatal, "the cluster has no free VDI id left";
    /// Wrong `proto_ver` for the opcode.
    VerMismatch = 0x14, "VER_MISMATCH", Fatal, "protocol version mismatch";
    /// The cluster's disks are full.
    NoSpace = 0x15, "NO_SPACE", Fatal, "no space left in the cluster";
    /// The cluster is not formatted (yet: it may be being formatted).
    WaitForFormat = 0x16, "WAIT_FOR_FORMAT", Transient, "the cluster is not formatted";
    /// The cluster is waiting for nodes to join.
    WaitForJoin = 0x17, "WAIT_FOR_JOIN", Transient, "the cluster is waiting for nodes to join";
    /// Joining failed (not produced by v1.0).
    JoinFailed = 0x18, "JOIN_FAILED", Fatal, "the node failed to join the cluster";
    /// No living nodes, or fewer zones than copies in strict mode.
    Halt = 0x19, "HALT", Transient, "the cluster is halted (too few nodes)";
    /// The object belongs to a snapshot: the VDI was snapshotted meanwhile.
    Readonly = 0x1A, "READONLY", Reresolve, "the object belongs to a snapshot and is read-only";
    /// A shared-lock participant must re-read the inode.
    InodeInvalidated = 0x1D, "INODE_INVALIDATED", Reresolve, "the cached inode was invalidated";
    /// Peer node version is old (internal).
    OldNodeVer = 0x81, "OLD_NODE_VER", Transient, "a node runs an older epoch";
    /// Peer node version is new (internal).
    NewNodeVer = 0x82, "NEW_NODE_VER", Transient, "a node runs a newer epoch";
    /// Network error between nodes.
    NetworkError = 0x86, "NETWORK_ERROR", Transient, "network error inside the cluster";
    /// The reply buffer was too small.
    BufferSmall = 0x88, "BUFFER_SMALL", Semantic, "the reply buffer is too small; retry with a larger one";
    /// The node was killed.
    Killed = 0x8D, "KILLED", Transient, "the node was killed";
    /// Try again.
    Again = 0x8F, "AGAIN", Transient, "the server asks to try again";
    /// A cluster operation was dropped.
    ClusterError = 0x91, "CLUSTER_ERROR", Transient, "a cluster operation failed";
    /// The cluster is collecting VDI state after a join.
    CollectingCinfo = 0x95, "COLLECTING_CINFO", Transient, "the cluster is collecting VDI state after a node joined";
}

impl ResultCode {
    /// Whether the request succeeded.
    pub const fn is_success(self) -> bool {
        matches!(self, ResultCode::Success)
    }
}

impl fmt::Display for ResultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResultCode::Unknown(code) => write!(f, "{} ({code:#x})", self.message()),
            known => f.write_str(known.message()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_have_classes() {
        for code in 0..=0x1_0100u32 {
            assert_eq!(ResultCode::from_u32(code).to_u32(), code);
        }
        assert!(ResultCode::Success.is_success());
        assert!(!ResultCode::NoObj.is_success());
        assert_eq!(ResultCode::from_u32(0x17), ResultCode::WaitForJoin);
        assert_eq!(ResultCode::from_u32(0x1A), ResultCode::Readonly);
        assert_eq!(ResultCode::WaitForJoin.class(), ResultClass::Transient);
        assert_eq!(ResultCode::NoVdi.name(), "NO_VDI");
    }
}
