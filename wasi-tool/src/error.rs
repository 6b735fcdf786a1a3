//! Errors as the user sees them: one line that names the cause and the
//! object.

use std::fmt;
use std::io;

use sheepdog_core::engine::Error as EngineError;
use sheepdog_core::error::SizeError;
use sheepdog_core::wire::ResultCode;

/// A failure, with the message printed after `error: `.
#[derive(Debug)]
pub struct CliError(pub String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl CliError {
    /// A message as is.
    pub fn msg(m: impl Into<String>) -> CliError {
        CliError(m.into())
    }
}

/// What an engine error means for `what` (a VDI, or VDI@SNAP).
pub fn engine(what: &str, e: EngineError) -> CliError {
    let m = match e {
        EngineError::Server { result, .. } | EngineError::RetriesExhausted { result, .. } => {
            match result {
                ResultCode::NoVdi => format!("no such VDI: {what}"),
                ResultCode::NoTag => format!("no such snapshot: {what}"),
                ResultCode::VdiExist => format!("VDI exists: {what}"),
                ResultCode::VdiLocked => format!("VDI is locked: {what}"),
                ResultCode::NoSpace => format!("no space left in the cluster (writing {what})"),
                ResultCode::FullVdi => {
                    format!("no free VDI id left in the cluster (creating {what})")
                }
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
            format!("{what}: hyper volumes (B-tree index) are not supported")
        }
        EngineError::ReadOnly => format!("{what} is a snapshot and cannot be written"),
        EngineError::TagExists => format!("snapshot exists: {what}"),
        EngineError::NotSnapshot => format!("{what} is not a snapshot (use VDI@SNAP)"),
        other => format!("{what}: {other}"),
    };
    CliError(m)
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
            CliError(format!("cannot connect to {addr}: connection refused"))
        }
        io::ErrorKind::PermissionDenied | io::ErrorKind::Unsupported => CliError(format!(
            "cannot connect to {addr}: network access denied{hint}"
        )),
        _ => CliError(format!("cannot connect to {addr}: {e}{hint}")),
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
        io::ErrorKind::NotFound => CliError(format!("file not found: {path}{hint}")),
        io::ErrorKind::PermissionDenied => {
            CliError(format!("cannot {action} {path}: permission denied{hint}"))
        }
        _ => CliError(format!("cannot {action} {path}: {e}{hint}")),
    }
}

/// The connection failed while talking to the cluster.
pub fn lost(addr: &str, e: &io::Error) -> CliError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            CliError(format!("the server at {addr} stopped answering"))
        }
        io::ErrorKind::UnexpectedEof => {
            CliError(format!("the server at {addr} closed the connection"))
        }
        _ => CliError(format!("connection to {addr} failed: {e}")),
    }
}

impl From<String> for CliError {
    fn from(m: String) -> CliError {
        CliError(m)
    }
}
