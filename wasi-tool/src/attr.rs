//! `attr list|get|set|delete VDI[@SNAP] ...`: VDI attributes, as `dog vdi
//! setattr` and `getattr` keep them (`core::attr`), so that each tool reads
//! what the other wrote. `VDI@SNAP` names a snapshot's own attributes
//! (dog reaches only the working VDI's).
//!
//! No request lists attributes: their objects sit in slots hashed from
//! keys. `attr list` asks every node for the objects it stores
//! (GET_OBJ_LIST), keeps the attribute objects under the VDI's name hash,
//! and reads each.

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;
use sheepdog_core::attr::{self, Attr, AttrDone, AttrKind, AttrOp, ATTR_LEN, MAX_VALUE};
use sheepdog_core::hash::vid_hash;
use sheepdog_core::obj_list::ObjListProbe;
use sheepdog_core::oid::{Oid, OidKind};
use sheepdog_core::wire::ResultCode;

use crate::cli::Cli;
use crate::error::{self, CliError};
use crate::gateways;
use crate::raw::{receive, send};
use crate::session;
use crate::target::Target;

/// The first GET_OBJ_LIST buffer, and the largest: 1 Mi and 64 Mi oids.
const OBJ_LIST_FIRST: usize = 8 << 20;
const OBJ_LIST_MAX: usize = 512 << 20;

/// The snapshot id `t` names (0 for the working VDI). A snapshot's
/// attributes are kept under its id, whether it is named by tag or by id,
/// so that `VDI@TAG` and `VDI@ID` are the same attributes.
fn snap_id_of(cli: &Cli, t: &Target) -> Result<u32, CliError> {
    if t.snapshot.is_none() {
        return Ok(0);
    }
    let mut c = session::connect(t, cli)?;
    let info = session::open(&mut c, t, false)?;
    session::close(&mut c, &t.display())?;
    Ok(info.snap_id)
}

/// What the attribute of `t` (snapshot `snap_id`) with `key` is sent as.
fn encoded(t: &Target, snap_id: u32, key: &str, value: &[u8]) -> Result<Vec<u8>, CliError> {
    let tag = "";
    let mut buf = vec![0u8; ATTR_LEN];
    attr::encode(
        &mut buf,
        t.name.as_bytes(),
        tag.as_bytes(),
        snap_id,
        key.as_bytes(),
        value,
    )
    .map_err(|e| {
        CliError::msg(match e {
            attr::AttrError::ValueTooLong => {
                format!(
                    "the value is {} bytes; an attribute holds at most {MAX_VALUE}",
                    value.len()
                )
            }
            attr::AttrError::BadField(f) => {
                format!("bad attribute {f}: it must be 1 to 255 bytes without NUL (tag: 0 to 255)")
            }
            attr::AttrError::BufferTooSmall => "internal error: attribute buffer".to_owned(),
        })
    })?;
    Ok(buf)
}

/// Run `op` to its end on `stream`.
fn run_op(stream: &mut TcpStream, addr: &str, op: &mut AttrOp<Vec<u8>>) -> Result<(), CliError> {
    while let Some((header, with_payload)) = op.poll_transmit() {
        let payload = if with_payload { op.payload() } else { &[] };
        send(stream, addr, &header, payload)?;
        receive(stream, addr, op)?;
        if op.outcome().is_some() {
            break;
        }
    }
    Ok(())
}

fn what(t: &Target, key: &str) -> String {
    format!("attribute {key} of {}", t.display())
}

/// The error for a failed attribute request.
fn failed(t: &Target, key: &str, e: sheepdog_core::engine::Error) -> CliError {
    match e {
        sheepdog_core::engine::Error::Server { result, .. } => match result {
            ResultCode::NoObj => CliError::msg(format!("no {}", what(t, key))),
            ResultCode::NoVdi => CliError::msg(format!("no such VDI: {}", t.display())),
            ResultCode::VdiExist => CliError::msg(format!(
                "{} exists (--exclusive sets only a new one)",
                what(t, key)
            )),
            r => CliError::msg(format!("cannot use {}: {r} ({})", what(t, key), r.name())),
        },
        e => error::engine(&what(t, key), e),
    }
}

/// `attr get VDI[@SNAP] KEY`: the value, as it is, on stdout.
pub fn get(cli: &Cli, vdi: &str, key: &str) -> Result<(), CliError> {
    let t = Target::parse(vdi)?;
    let buf = encoded(&t, snap_id_of(cli, &t)?, key, &[])?;
    let mut client = session::connect(&t, cli)?;
    let addr = client.addr.clone();
    let mut op = AttrOp::new(buf, 1, AttrKind::Get).map_err(|_| CliError::msg("internal error"))?;
    let ran = run_op(client.stream(), &addr, &mut op);
    client.resume();
    ran?;
    match op.outcome() {
        Some(Ok(AttrDone::Value(a, _))) => io::stdout()
            .write_all(a.value)
            .and_then(|()| io::stdout().flush())
            .map_err(|e| CliError::msg(format!("cannot write to stdout: {e}"))),
        Some(Ok(AttrDone::Done)) | None => Err(CliError::msg(format!(
            "the server at {addr} did not answer for {}",
            what(&t, key)
        ))),
        Some(Err(e)) => Err(failed(&t, key, e)),
    }
}

/// `attr set VDI[@SNAP] KEY VALUE|--file F [--exclusive]`
pub fn set(
    cli: &Cli,
    vdi: &str,
    key: &str,
    value: Option<&str>,
    file: Option<&str>,
    exclusive: bool,
) -> Result<(), CliError> {
    let t = Target::parse(vdi)?;
    let value: Vec<u8> = match (value, file) {
        (Some(v), None) => v.as_bytes().to_vec(),
        (None, Some("-")) => read_value(&mut io::stdin().lock(), "stdin")?,
        (None, Some(f)) => {
            let mut file = std::fs::File::open(f).map_err(|e| error::file(f, "read", &e))?;
            read_value(&mut file, f)?
        }
        _ => {
            return Err(CliError::msg(
                "attr set takes the value as an argument or from --file, not both",
            ))
        }
    };
    let buf = encoded(&t, snap_id_of(cli, &t)?, key, &value)?;
    control(cli, &t, key, buf, AttrKind::Set { exclusive })?;
    if !cli.quiet {
        eprintln!("set {} ({} bytes)", what(&t, key), value.len());
    }
    Ok(())
}

/// A value of at most [`MAX_VALUE`] bytes.
fn read_value(r: &mut dyn Read, name: &str) -> Result<Vec<u8>, CliError> {
    let mut v = Vec::new();
    r.take(MAX_VALUE as u64 + 1)
        .read_to_end(&mut v)
        .map_err(|e| error::file(name, "read", &e))?;
    if v.len() > MAX_VALUE {
        return Err(CliError::msg(format!(
            "{name} holds more than {MAX_VALUE} bytes, the most an attribute holds"
        )));
    }
    Ok(v)
}

/// `attr delete VDI[@SNAP] KEY`
pub fn delete(cli: &Cli, vdi: &str, key: &str) -> Result<(), CliError> {
    let t = Target::parse(vdi)?;
    let buf = encoded(&t, snap_id_of(cli, &t)?, key, &[])?;
    control(cli, &t, key, buf, AttrKind::Delete)?;
    if !cli.quiet {
        eprintln!("deleted {}", what(&t, key));
    }
    Ok(())
}

fn control(cli: &Cli, t: &Target, key: &str, buf: Vec<u8>, kind: AttrKind) -> Result<(), CliError> {
    let mut client = session::connect(t, cli)?;
    let addr = client.addr.clone();
    let mut op = AttrOp::new(buf, 1, kind).map_err(|_| CliError::msg("internal error"))?;
    let ran = run_op(client.stream(), &addr, &mut op);
    client.resume();
    ran?;
    match op.outcome() {
        Some(Ok(_)) => Ok(()),
        Some(Err(e)) => Err(failed(t, key, e)),
        None => Err(CliError::msg(format!(
            "the server at {addr} did not answer for {}",
            what(t, key)
        ))),
    }
}

/// The oids `addr` stores.
fn objects_of(addr: &str, timeout: Duration) -> Result<Vec<Oid>, CliError> {
    let d = gateways::dial(addr, timeout, timeout).map_err(|r| {
        CliError::msg(format!(
            "cannot list the objects of {}: {}",
            r.addr, r.reason
        ))
    })?;
    let mut stream = d.stream;
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(timeout));
    let mut len = OBJ_LIST_FIRST;
    loop {
        let mut probe = ObjListProbe::new(vec![0u8; len], 1);
        let header = probe.request();
        send(&mut stream, &d.addr, &header, &[])?;
        receive(&mut stream, &d.addr, &mut probe)?;
        if probe.too_small() && len < OBJ_LIST_MAX {
            len *= 4;
            continue;
        }
        return match probe.outcome() {
            Some(Ok(oids)) => Ok(oids.collect()),
            Some(Err(e)) => Err(error::engine(&format!("the object list of {}", d.addr), e)),
            None => Err(CliError::msg(format!(
                "{} did not send its object list",
                d.addr
            ))),
        };
    }
}

/// `attr list VDI[@SNAP] [--json]`: every attribute of the VDI (with
/// `@SNAP`, of that snapshot only).
pub fn list(cli: &Cli, vdi: &str, json: bool) -> Result<(), CliError> {
    let t = Target::parse(vdi)?;
    let snap_id = snap_id_of(cli, &t)?;
    let mut client = session::connect(&t, cli)?;
    // The VDI's VIDs: it must exist, and their tags name the snapshots.
    // (sheep keeps attributes by name: those a deleted VDI of the same
    // name left are this one's too, for dog's getattr as for ours.)
    let family: Vec<crate::list::VdiRow> = crate::list::collect(&mut session::connect(&t, cli)?)?
        .into_iter()
        .filter(|r| r.name() == t.name)
        .collect();
    if family.is_empty() {
        return Err(CliError::msg(format!("no such VDI: {}", t.name)));
    }
    let hvid = vid_hash(t.name.as_bytes());
    let mut nodes: Vec<String> = client.nodes().iter().map(|a| a.to_string()).collect();
    if nodes.is_empty() {
        nodes.push(client.addr.clone());
    }
    let timeout = cli.timeout;
    let mut oids = BTreeSet::new();
    for n in &nodes {
        for oid in objects_of(n, timeout)? {
            if oid.kind() == OidKind::Attr && oid.vid_bits() == hvid {
                oids.insert(oid);
            }
        }
    }
    let addr = client.addr.clone();
    let mut rows = Vec::new();
    for oid in oids {
        let mut op = AttrOp::new(vec![0u8; ATTR_LEN], 1, AttrKind::Read(oid))
            .map_err(|_| CliError::msg("internal error"))?;
        let ran = run_op(client.stream(), &addr, &mut op);
        client.resume();
        ran?;
        match op.outcome() {
            Some(Ok(AttrDone::Value(a, _)))
                if !a.is_deleted()
                    && a.name == t.name.as_bytes()
                    && (t.snapshot.is_none() || a.snap_id == snap_id && a.tag.is_empty()) =>
            {
                rows.push(Row::of(&a, &family));
            }
            // Removed since the listing: gone.
            Some(Err(sheepdog_core::engine::Error::Server {
                result: ResultCode::NoObj,
                ..
            })) => {}
            Some(Err(e)) => return Err(error::engine(&format!("attribute object {oid}"), e)),
            _ => {}
        }
    }
    rows.sort_by(|a, b| (&a.snapshot, &a.key).cmp(&(&b.snapshot, &b.key)));
    print_rows(&rows, json, cli.quiet);
    Ok(())
}

struct Row {
    key: String,
    value: Vec<u8>,
    snapshot: String,
}

impl Row {
    fn of(a: &Attr<'_>, family: &[crate::list::VdiRow]) -> Row {
        let snapshot = if !a.tag.is_empty() {
            String::from_utf8_lossy(a.tag).into_owned()
        } else if a.snap_id != 0 {
            // By its tag where it has one.
            family
                .iter()
                .find(|r| r.is_snapshot() && r.snap_id() == a.snap_id && !r.tag().is_empty())
                .map_or_else(|| a.snap_id.to_string(), |r| r.tag().to_owned())
        } else {
            String::new()
        };
        Row {
            key: String::from_utf8_lossy(a.key).into_owned(),
            value: a.value.to_vec(),
            snapshot,
        }
    }

    /// The value as text, when it is printable on one line.
    fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.value)
            .ok()
            .filter(|s| !s.chars().any(char::is_control))
    }
}

fn print_rows(rows: &[Row], json: bool, quiet: bool) {
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "key": r.key,
                    "snapshot": r.snapshot,
                    "value_len": r.value.len(),
                    "value": r.text(),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
        return;
    }
    if rows.is_empty() && !quiet {
        eprintln!("no attributes");
    }
    for r in rows {
        let at = if r.snapshot.is_empty() {
            String::new()
        } else {
            format!(" (snapshot {})", r.snapshot)
        };
        match r.text() {
            Some(t) => println!("{}{at} = {t}", r.key),
            None => println!("{}{at}: {} bytes of binary data", r.key, r.value.len()),
        }
    }
}
