//! A request and its reply over a blocking connection, for the small
//! sans-IO exchanges outside the engine (`core::attr`, `core::obj_list`,
//! `core::object_op`).

use std::io::{self, Read, Write};
use std::net::TcpStream;

use sheepdog_core::object_op::{ObjectKind, ObjectOp};
use sheepdog_core::oid::Oid;
use sheepdog_core::receive::{NoBuffers, Receiver, Replies};
use sheepdog_core::wire::ResultCode;

use crate::client::Client;
use crate::error::{self, CliError};

/// Send `header` and `payload` (empty when none follows).
pub fn send(
    stream: &mut TcpStream,
    addr: &str,
    header: &[u8],
    payload: &[u8],
) -> Result<(), CliError> {
    stream
        .write_all(header)
        .and_then(|()| stream.write_all(payload))
        .map_err(|e| error::lost(addr, &e))
}

/// Take one reply through the one receive path into `machine`.
pub fn receive<R: Replies>(
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

/// Run one object request (`core::object_op`) on the client's
/// connection, then give the connection back to the readiness loop.
pub fn object(
    client: &mut Client,
    buf: Vec<u8>,
    oid: Oid,
    kind: ObjectKind,
) -> Result<ObjectOp<Vec<u8>>, CliError> {
    let addr = client.addr.clone();
    let mut op = ObjectOp::new(buf, 1, oid, kind);
    let stream = client.stream();
    // The payload is sent from the op's own buffer: no copy of it.
    let res = send(stream, &addr, &op.request(), op.payload())
        .and_then(|()| receive(stream, &addr, &mut op));
    client.resume();
    res?;
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
        match op.outcome() {
            Some(Ok(())) => removed += 1,
            Some(Err(sheepdog_core::engine::Error::Server {
                result: ResultCode::NoObj,
                ..
            })) => {}
            Some(Err(e)) => return Err(error::engine(&format!("object {oid}"), e)),
            None => return Err(CliError::msg("internal error: no reply")),
        }
    }
    Ok(removed)
}
