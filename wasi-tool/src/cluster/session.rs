//! Steps shared by the commands: open and close a VDI, run a control
//! operation and turn its outcome into a message.

use sheepdog_core::engine::{ControlDone, Error as EngineError, VolumeInfo};

use super::client::{Client, Eng};
use crate::error::{self, CliError};
use crate::target::Target;

/// Start a control operation with `start` and run it to its end.
pub fn run(
    client: &mut Client,
    what: &str,
    start: impl FnOnce(&mut Eng) -> Result<(), EngineError>,
) -> Result<ControlDone, CliError> {
    start(&mut client.engine).map_err(|e| error::engine(what, e))?;
    match client.control()? {
        ControlDone::Failed(e) => Err(error::engine(what, e)),
        done => Ok(done),
    }
}

/// The largest index cache the tool gives an engine: a hyper volume of
/// 256 TiB (2^26 objects of 4 MiB). A flat VDI needs at most 4 MiB.
pub const MAX_INDEX_CACHE: u64 = 256 << 20;

/// Open the VDI or snapshot `t`. A hyper volume whose B-tree needs a
/// larger index cache than the engine has gets one, and is opened again.
pub fn open(client: &mut Client, t: &Target, lock: bool) -> Result<VolumeInfo, CliError> {
    let what = t.display();
    start(client, |e| e.open(&t.name, t.selector(), lock), &what)?;
    let done = match client.control()? {
        ControlDone::Failed(EngineError::IndexBufferTooSmall { need })
            if need <= MAX_INDEX_CACHE =>
        {
            if client
                .engine
                .replace_index(vec![0u8; need as usize])
                .is_err()
            {
                return Err(CliError::msg("internal error: the engine is busy"));
            }
            run(client, &what, |e| e.open(&t.name, t.selector(), lock))?
        }
        ControlDone::Failed(e) => return Err(error::engine(&what, e)),
        done => done,
    };
    match done {
        ControlDone::Opened(info) => Ok(info),
        other => Err(unexpected(&other)),
    }
}

fn start(
    client: &mut Client,
    begin: impl FnOnce(&mut Eng) -> Result<(), EngineError>,
    what: &str,
) -> Result<(), CliError> {
    begin(&mut client.engine).map_err(|e| error::engine(what, e))
}

/// Close the open VDI, releasing its lock if it holds one.
pub fn close(client: &mut Client, what: &str) -> Result<(), CliError> {
    run(client, what, |e| e.close()).map(|_| ())
}

/// An outcome that does not belong to the operation.
pub fn unexpected(done: &ControlDone) -> CliError {
    CliError::msg(format!("internal error: unexpected outcome {done:?}"))
}
