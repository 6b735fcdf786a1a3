//! The one-request exchanges outside the engine (`core::reply::Exchange`:
//! the node list, a node's objects, one object, an attribute) run on a
//! blocking connection: each request and its payload, then its reply
//! through the one receive path.

use std::io::{self, Read, Write};
use std::net::TcpStream;

use sheepdog_core::object_op::{ObjectKind, ObjectOp};
use sheepdog_core::oid::Oid;
use sheepdog_core::receive::{NoBuffers, Receiver, Replies};
use sheepdog_core::reply::{Conversation, Exchange};
use sheepdog_core::wire::ResultCode;

use super::client::Client;
use crate::error::{self, CliError};

/// Send `header` and `payload` (empty when none follows).
fn send(stream: &mut TcpStream, addr: &str, header: &[u8], payload: &[u8]) -> Result<(), CliError> {
    stream
        .write_all(header)
        .and_then(|()| stream.write_all(payload))
        .map_err(|e| error::lost(addr, &e))
}

/// Take one reply through the one receive path into `machine`.
fn receive<R: Replies>(
    stream: &mut TcpStream,
    addr: &str,
    machine: &mut R,
) -> Result<(), CliError> {
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

/// Run `ex` to its end on the blocking `stream` (the node at `addr`):
/// its outcome is then in `ex`.
pub fn exchange<B, C>(
    stream: &mut TcpStream,
    addr: &str,
    ex: &mut Exchange<B, C>,
) -> Result<(), CliError>
where
    B: AsRef<[u8]> + AsMut<[u8]>,
    C: Conversation,
{
    while let Some(header) = ex.poll_transmit() {
        // The payload is sent from the exchange's own buffer: no copy.
        send(stream, addr, &header, ex.payload())?;
        receive(stream, addr, ex)?;
    }
    Ok(())
}

/// Run `ex` on the client's connection, then give the connection back to
/// the readiness loop.
pub fn on_client<B, C>(client: &mut Client, ex: &mut Exchange<B, C>) -> Result<(), CliError>
where
    B: AsRef<[u8]> + AsMut<[u8]>,
    C: Conversation,
{
    let addr = client.addr.clone();
    let res = exchange(client.stream(), &addr, ex);
    client.resume();
    res
}

/// Run one object request (`core::object_op`) on the client's
/// connection.
pub fn object(
    client: &mut Client,
    buf: Vec<u8>,
    oid: Oid,
    kind: ObjectKind,
) -> Result<Exchange<Vec<u8>, ObjectOp>, CliError> {
    let mut op = Exchange::new(buf, 1, ObjectOp::new(oid, kind));
    on_client(client, &mut op)?;
    Ok(op)
}

/// REMOVE_OBJ each of `oids` (`copies` each); objects already gone are
/// fine. Returns how many were removed.
pub fn remove_all(
    client: &mut Client,
    oids: impl Iterator<Item = Oid>,
    copies: u8,
) -> Result<u32, CliError> {
    let mut removed = 0;
    for oid in oids {
        let op = object(client, Vec::new(), oid, ObjectKind::Remove { copies })?;
        if op.refused_with(ResultCode::NoObj) {
            continue;
        }
        match op.outcome() {
            Some(Ok(())) => removed += 1,
            Some(Err(e)) => return Err(error::engine(&format!("object {oid}"), e)),
            None => return Err(CliError::msg("internal error: no reply")),
        }
    }
    Ok(removed)
}
