//! One request and its reply over a blocking connection, for the small
//! sans-IO exchanges outside the engine (`core::attr`, `core::obj_list`,
//! `core::object_op`).

use std::io::{self, Read, Write};
use std::net::TcpStream;

use sheepdog_core::receive::{NoBuffers, Receiver, Replies};

use crate::error::{self, CliError};

/// Send `header` (and `payload`), then take the reply through the one
/// receive path into `machine`.
pub fn exchange<R: Replies>(
    stream: &mut TcpStream,
    addr: &str,
    machine: &mut R,
    header: &[u8],
    payload: &[u8],
) -> Result<(), CliError> {
    stream
        .write_all(header)
        .and_then(|()| stream.write_all(payload))
        .map_err(|e| error::lost(addr, &e))?;
    let mut rx = Receiver::new();
    let mut scratch = [0u8; 0];
    let mut no_bufs = NoBuffers;
    loop {
        let into = rx.buffer(machine, &mut no_bufs, &mut scratch);
        let n = match stream.read(into) {
            Ok(0) => return Err(error::lost(addr, &io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(error::lost(addr, &e)),
        };
        match rx.advance(machine, n, &scratch, 0) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => {
                return Err(CliError::msg(format!(
                    "the server at {addr} sent a bad reply: {e}"
                )))
            }
        }
    }
}
