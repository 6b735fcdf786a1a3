//! A hyper volume's B-tree brought up to date after writes
//! (`core::btree::commit`): the entries the engine set in its cache since
//! the last commit go into the tree, one request at a time on the client's
//! connection, once every write is done.

use std::net::TcpStream;
use std::time::Duration;

use sheepdog_core::btree::commit::{Buffer, Commit, LEAF_BUF_LEN, ROOT_BUF_LEN};
use sheepdog_core::engine::Error as EngineError;
use sheepdog_core::object_op::ObjectOp;
use sheepdog_core::oid::Vid;
use sheepdog_core::reply::Exchange;
use sheepdog_core::wire::ResultClass;

use super::client::{Client, Eng};
use super::raw::exchange;
use crate::error::{self, CliError};

/// Transient results waited out per request (about 16 s in all).
const RETRIES: u32 = 8;

/// What a commit did.
#[derive(Debug, Default)]
pub struct Committed {
    /// Requests made.
    pub requests: u32,
    /// Leaves created.
    pub leaves_made: u32,
    /// The root's depth after it.
    pub depth: u16,
}

/// Commit what writes to the open hyper volume `name` left out of its
/// B-tree (nothing for a flat VDI). The engine must be idle.
pub fn commit(client: &mut Client, name: &str) -> Result<Committed, CliError> {
    let Some(info) = client.engine.volume().filter(|v| v.hyper) else {
        return Ok(Committed::default());
    };
    let Some((lo, hi)) = client.engine.take_uncommitted() else {
        return Ok(Committed::default());
    };
    let vid = Vid::new(info.vid).map_err(|e| CliError::msg(format!("{name}: {e}")))?;
    let mut machine = Commit::new(vid, info.copies, lo, hi);
    let mut root = vec![0u8; ROOT_BUF_LEN];
    let mut leaf = vec![0u8; LEAF_BUF_LEN];
    let res = client.raw_with_engine(|stream, addr, engine| {
        run(
            stream,
            addr,
            engine,
            &mut machine,
            &mut root,
            &mut leaf,
            name,
        )
    });
    if res.is_err() {
        // A later commit covers these again.
        client.engine.restore_uncommitted(lo, hi);
    }
    let requests = res?;
    Ok(Committed {
        requests,
        leaves_made: machine.leaves_made(),
        depth: machine.depth(),
    })
}

fn run(
    stream: &mut TcpStream,
    addr: &str,
    engine: &Eng,
    machine: &mut Commit,
    root: &mut [u8],
    leaf: &mut [u8],
    name: &str,
) -> Result<u32, CliError> {
    let what = format!("B-tree of {name}");
    let index = engine.index_entries();
    let mut requests = 0;
    while let Some(step) = machine
        .next(index, root, leaf)
        .map_err(|e| error::engine(&what, e))?
    {
        let buf = match step.buffer {
            Buffer::Root => &mut root[step.range.clone()],
            Buffer::Leaf => &mut leaf[step.range.clone()],
        };
        // A transient result (the cluster recovering, a node joining) is
        // waited out a few times, as the engine's retries are.
        let mut attempt = 0u32;
        loop {
            let mut op = Exchange::new(&mut *buf, 1, ObjectOp::new(step.oid, step.kind));
            exchange(stream, addr, &mut op).map_err(|e| e.of(&what))?;
            requests += 1;
            match op.outcome() {
                Some(Ok(())) => break,
                Some(Err(EngineError::Server { result, .. }))
                    if result.class() == ResultClass::Transient && attempt < RETRIES =>
                {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(100 << attempt.min(5)));
                }
                Some(Err(e)) => {
                    return Err(error::engine(&format!("{what}, object {}", step.oid), e))
                }
                None => return Err(CliError::msg("internal error: no reply")),
            }
        }
        machine
            .done(index, root)
            .map_err(|e| error::engine(&what, e))?;
    }
    Ok(requests)
}
