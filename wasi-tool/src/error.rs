//! Errors as the user sees them: one line that names the cause and the
//! object, and a [`Kind`] that commands decide by (never the text).

use std::fmt;
use std::io;

use sheepdog_core::engine::Error as EngineError;
use sheepdog_core::error::SizeError;
use sheepdog_core::wire::ResultCode;

/// A failure, with the message printed after `error: `.
#[derive(Clone, Debug)]
pub struct CliError {
    msg: String,
    kind: Kind,
}

/// What kind of failure, where a command decides by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The VDI does not exist (import then creates it).
    NoSuchVdi,
    /// The VDI is locked by another client (LOCK_VDI refused).
    Locked,
    /// The connection to the gateway failed for good.
    Lost,
    /// The command did what it could, and not all of it: `export
    /// --salvage` wrote zeros for objects it could not read (exit 3).
    Partial,
    /// `compare` found a difference (exit 1, the message on stdout).
    Different,
    /// `check` or `orphans` found what it reports and left some of it
    /// (exit 1, errors are 2).
    Findings,
    /// A hyper volume, which only some commands can handle yet.
    Hyper,
    /// Anything else.
    Other,
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl CliError {
    /// A message as is.
    pub fn msg(m: impl Into<String>) -> CliError {
        CliError {
            msg: m.into(),
            kind: Kind::Other,
        }
    }

    /// A partial success (exit status 3).
    pub fn partial(m: impl Into<String>) -> CliError {
        CliError {
            msg: m.into(),
            kind: Kind::Partial,
        }
    }

    /// Two images differ (`compare`).
    pub fn different(m: impl Into<String>) -> CliError {
        CliError {
            msg: m.into(),
            kind: Kind::Different,
        }
    }

    /// Findings left by `check` or `orphans` (exit status 1).
    pub fn findings(m: impl Into<String>) -> CliError {
        CliError {
            msg: m.into(),
            kind: Kind::Findings,
        }
    }

    /// What kind of failure it is.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The same failure, with `detail` after it in parentheses.
    pub fn with_detail(self, detail: &str) -> CliError {
        CliError {
            msg: format!("{} ({detail})", self.msg),
            kind: self.kind,
        }
    }

    /// The same failure, said to be of `what`.
    pub fn of(self, what: &str) -> CliError {
        CliError {
            msg: format!("{what}: {}", self.msg),
            kind: self.kind,
        }
    }

    /// The connection was lost during `what` (`import of vm1`): say so,
    /// and what to do (`advice`).
    pub fn during(self, what: &str, advice: &str) -> CliError {
        match self.kind {
            Kind::Lost => CliError {
                msg: format!("{} during {what}; {advice}", self.msg),
                kind: Kind::Lost,
            },
            _ => self,
        }
    }
}

impl std::error::Error for CliError {}

/// What an engine error means for `what` (a VDI, or VDI@SNAP).
pub fn engine(what: &str, e: EngineError) -> CliError {
    let m = match e {
        EngineError::Server { result, .. } | EngineError::RetriesExhausted { result, .. } => {
            match result {
                ResultCode::NoVdi => {
                    return CliError {
                        msg: format!("no such VDI: {what}"),
                        kind: Kind::NoSuchVdi,
                    }
                }
                ResultCode::NoTag => format!("no such snapshot: {what}"),
                ResultCode::VdiExist => format!("VDI exists: {what}"),
                ResultCode::VdiLocked => {
                    return CliError {
                        msg: format!("VDI is locked: {what}"),
                        kind: Kind::Locked,
                    }
                }
                ResultCode::NoSpace => format!("no space left in the cluster (writing {what})"),
                ResultCode::FullVdi => {
                    format!("no free VDI id left in the cluster (creating {what})")
                }
                r @ (ResultCode::WaitForJoin
                | ResultCode::WaitForFormat
                | ResultCode::Halt
                | ResultCode::Shutdown
                | ResultCode::Killed) => match e {
                    // A state of the cluster, not a failure of the node:
                    // waited for as long as the timeout allows.
                    EngineError::RetriesExhausted { .. } => format!(
                        "{what}: {r} ({}), and still after waiting as long as --timeout allows",
                        r.name()
                    ),
                    _ => format!("{what}: {r} ({})", r.name()),
                },
                r => match e {
                    EngineError::RetriesExhausted { opcode, .. } => {
                        format!("{what}: {r} ({opcode}), still failing after retries")
                    }
                    _ => format!("{what}: {e}"),
                },
            }
        }
        EngineError::Size(SizeError::TooLarge { size, max }) => {
            format!("{what}: size {size} is too large for its object size (at most {max} bytes)")
        }
        EngineError::Size(SizeError::HyperVolume) => {
            return CliError {
                msg: format!("{what}: hyper volumes (B-tree index) can be read, not written, yet"),
                kind: Kind::Hyper,
            }
        }
        EngineError::ReadOnly => format!("{what} is a snapshot and cannot be written"),
        EngineError::IndexBufferTooSmall { need } => format!(
            "{what}: its index would need {need} bytes of memory, more than this tool gives it \
             (hyper volumes of up to 256 TiB are read)"
        ),
        EngineError::TagExists => format!("snapshot exists: {what}"),
        EngineError::NotSnapshot => format!("{what} is not a snapshot (use VDI@SNAP)"),
        other => format!("{what}: {other}"),
    };
    CliError::msg(m)
}

/// A failure to reach the cluster.
pub fn connect(addr: &str, e: &io::Error) -> CliError {
    let hint = if cfg!(target_os = "wasi") {
        " (under wasmtime, grant network access with -S inherit-network)"
    } else {
        ""
    };
    match e.kind() {
        io::ErrorKind::ConnectionRefused => {
            CliError::msg(format!("cannot connect to {addr}: connection refused"))
        }
        io::ErrorKind::PermissionDenied | io::ErrorKind::Unsupported => CliError::msg(format!(
            "cannot connect to {addr}: network access denied{hint}"
        )),
        _ => CliError::msg(format!("cannot connect to {addr}: {e}{hint}")),
    }
}

/// A failure to open or read a file.
pub fn file(path: &str, action: &str, e: &io::Error) -> CliError {
    let hint = if cfg!(target_os = "wasi") {
        " (under wasmtime, grant access to its directory with --dir)"
    } else {
        ""
    };
    match e.kind() {
        io::ErrorKind::NotFound => CliError::msg(format!("file not found: {path}{hint}")),
        io::ErrorKind::PermissionDenied => {
            CliError::msg(format!("cannot {action} {path}: permission denied{hint}"))
        }
        _ => CliError::msg(format!("cannot {action} {path}: {e}{hint}")),
    }
}

/// The connection failed while talking to the cluster, and connecting
/// again did not help.
pub fn lost(addr: &str, e: &io::Error) -> CliError {
    let msg = match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            format!("the node {addr} stopped answering")
        }
        io::ErrorKind::UnexpectedEof => format!("the node {addr} closed the connection"),
        io::ErrorKind::ConnectionRefused => {
            format!("the node {addr} went away and refuses connections")
        }
        _ => format!("the connection to the node {addr} failed ({e})"),
    };
    CliError {
        msg,
        kind: Kind::Lost,
    }
}

impl From<String> for CliError {
    fn from(m: String) -> CliError {
        CliError::msg(m)
    }
}
