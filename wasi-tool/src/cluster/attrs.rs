//! VDI attributes as a library (`core::attr`): encode one, run its
//! exchange on a connection, and list every attribute kept under a VDI's
//! name (no request lists them: their objects sit in slots hashed from
//! keys, so every node is asked for the objects it stores and the
//! attribute objects under the name's hash are read).

use std::collections::BTreeSet;
use std::time::Duration;

use sheepdog_core::attr::{self, AttrDone, AttrKind, AttrOp, ATTR_LEN, MAX_VALUE};
use sheepdog_core::hash::vid_hash;
use sheepdog_core::oid::{Oid, OidKind};
use sheepdog_core::reply::Exchange;
use sheepdog_core::wire::ResultCode;

use super::{objects, raw, Client};
use crate::error::{self, CliError};

/// One attribute as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribute {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// The snapshot id it belongs to (0: the working VDI).
    pub snap_id: u32,
    /// The snapshot tag it was set under (dog sets none).
    pub tag: Vec<u8>,
}

/// The attribute of VDI `name` (snapshot `snap_id`, 0 for the working
/// VDI) with `key` and `value`, as the exchanges send it.
pub fn encoded(name: &str, snap_id: u32, key: &[u8], value: &[u8]) -> Result<Vec<u8>, CliError> {
    let mut buf = vec![0u8; ATTR_LEN];
    attr::encode(&mut buf, name.as_bytes(), b"", snap_id, key, value).map_err(|e| {
        CliError::msg(match e {
            attr::AttrError::ValueTooLong => format!(
                "the value is {} bytes; an attribute holds at most {MAX_VALUE}",
                value.len()
            ),
            attr::AttrError::BadField(f) => {
                format!("bad attribute {f}: it must be 1 to 255 bytes without NUL (tag: 0 to 255)")
            }
            attr::AttrError::BufferTooSmall => "internal error: attribute buffer".to_owned(),
        })
    })?;
    Ok(buf)
}

/// The attribute exchange `kind` of the attribute `buf` (as [`encoded`]
/// wrote it), run on the client's connection.
pub fn exchange(
    client: &mut Client,
    buf: Vec<u8>,
    kind: AttrKind,
) -> Result<Exchange<Vec<u8>, AttrOp>, CliError> {
    let op = AttrOp::new(&buf, kind).map_err(|e| CliError::msg(format!("internal error: {e}")))?;
    let mut ex = Exchange::new(buf, 1, op);
    raw::on_client(client, &mut ex)?;
    Ok(ex)
}

/// Every attribute kept under the VDI name `name`, its snapshots' too, in
/// key order; `timeout` bounds each node's object list.
pub fn list(
    client: &mut Client,
    name: &str,
    timeout: Duration,
) -> Result<Vec<Attribute>, CliError> {
    let oids = objects(client, timeout)?;
    read(client, name, &oids)
}

/// The attribute objects the nodes store (each node's object list, the
/// attribute objects kept): what [`read`] reads from, for any number of
/// VDI names.
pub fn objects(client: &mut Client, timeout: Duration) -> Result<BTreeSet<Oid>, CliError> {
    let mut nodes: Vec<String> = client.nodes().iter().map(|a| a.to_string()).collect();
    if nodes.is_empty() {
        nodes.push(client.addr.clone());
    }
    let mut oids = BTreeSet::new();
    for n in &nodes {
        oids.extend(
            objects::of_node(n, timeout)?
                .into_iter()
                .filter(|oid| oid.kind() == OidKind::Attr),
        );
    }
    Ok(oids)
}

/// Every attribute kept under the VDI name `name`, in key order: the
/// objects of `oids` under the name's hash, read.
pub fn read(
    client: &mut Client,
    name: &str,
    oids: &BTreeSet<Oid>,
) -> Result<Vec<Attribute>, CliError> {
    let hvid = vid_hash(name.as_bytes());
    let oids = oids.iter().copied().filter(|oid| oid.vid_bits() == hvid);
    let mut found = Vec::new();
    for oid in oids {
        let op = exchange(client, vec![0u8; ATTR_LEN], AttrKind::Read(oid))?;
        if op.refused_with(ResultCode::NoObj) {
            // Removed since the listing: gone.
            continue;
        }
        match op.outcome() {
            Some(Ok(AttrDone::Value(a, _))) if !a.is_deleted() && a.name == name.as_bytes() => {
                found.push(Attribute {
                    key: a.key.to_vec(),
                    value: a.value.to_vec(),
                    snap_id: a.snap_id,
                    tag: a.tag.to_vec(),
                });
            }
            Some(Err(e)) => return Err(error::engine(&format!("attribute object {oid}"), e)),
            _ => {}
        }
    }
    found.sort_by(|a, b| (a.snap_id, &a.key).cmp(&(b.snap_id, &b.key)));
    Ok(found)
}

/// Set the attribute `key` of VDI `name` (snapshot `snap_id`) to `value`.
pub fn set(
    client: &mut Client,
    name: &str,
    snap_id: u32,
    key: &[u8],
    value: &[u8],
) -> Result<(), CliError> {
    let buf = encoded(name, snap_id, key, value)?;
    let op = exchange(client, buf, AttrKind::Set { exclusive: false })?;
    match op.outcome() {
        Some(Ok(_)) => Ok(()),
        Some(Err(e)) => Err(error::engine(
            &format!("attribute {} of {name}", String::from_utf8_lossy(key)),
            e,
        )),
        None => Err(CliError::msg(format!(
            "the server at {} did not answer for an attribute of {name}",
            client.addr
        ))),
    }
}
