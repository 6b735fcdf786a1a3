//! The machine's side of the tool: files and standard streams named on the
//! command line (`-` is stdin or stdout, in one place), the holes of sparse
//! files, sending file bytes straight to a socket, and waiting on many
//! sockets at once (looking for a moment without sleeping first, when
//! that pays). Nothing here speaks the protocol.

pub mod holes;
pub mod input;
pub mod outfile;
pub mod output;
pub mod readiness;
pub mod sendfile;
pub mod spin;
pub mod stdout;

/// How a command line names stdin or stdout.
pub const STDIO: &str = "-";
