//! Steps shared by the commands: connect, open and close a VDI, run a
//! control operation and turn its outcome into a message.

use sheepdog_core::engine::{ControlDone, Error as EngineError, VolumeInfo};

use crate::cli::Cli;
use crate::client::{Client, Eng};
use crate::error::{self, CliError};
use crate::target::Target;

/// Connect to the server the target names, else to the nodes of `-a`.
pub fn connect(t: &Target, cli: &Cli) -> Result<Client, CliError> {
    Client::connect(cli.gateways(t.server.as_deref())?, cli.quiet)
}

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

/// Open the VDI or snapshot `t`.
pub fn open(client: &mut Client, t: &Target, lock: bool) -> Result<VolumeInfo, CliError> {
    let what = t.display();
    match run(client, &what, |e| e.open(&t.name, t.selector(), lock))? {
        ControlDone::Opened(info) => Ok(info),
        other => Err(unexpected(&other)),
    }
}

/// Close the open VDI, releasing its lock if it holds one.
pub fn close(client: &mut Client, what: &str) -> Result<(), CliError> {
    run(client, what, |e| e.close()).map(|_| ())
}

/// An outcome that does not belong to the operation.
pub fn unexpected(done: &ControlDone) -> CliError {
    CliError::msg(format!("internal error: unexpected outcome {done:?}"))
}
