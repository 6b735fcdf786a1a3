//! `attr list|get|set|delete VDI[@SNAP] ...`: VDI attributes, as `dog vdi
//! setattr` and `getattr` keep them (`core::attr`), so that each tool reads
//! what the other wrote. `VDI@SNAP` names a snapshot's own attributes
//! (dog reaches only the working VDI's).
//!
//! No request lists attributes: their objects sit in slots hashed from
//! keys. `attr list` asks every node for the objects it stores
//! (GET_OBJ_LIST), keeps the attribute objects under the VDI's name hash,
//! and reads each.

use std::io::{Read, Write};

use clap::Subcommand;
use serde_json::json;
use sheepdog_core::attr::{AttrDone, AttrKind, MAX_VALUE};
use sheepdog_core::wire::ResultCode;

use crate::cli::Global;
use crate::cluster::attrs::{self, Attribute};
use crate::cluster::session;
use crate::cluster::vdis::{collect, VdiRow};
use crate::error::{self, CliError};
use crate::io::input;
use crate::target::Target;

/// Attribute commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// List the attributes of a VDI (with @SNAP, of that snapshot)
    List {
        /// VDI[@SNAP]
        vdi: String,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Print the value of an attribute, as it is
    Get {
        /// VDI[@SNAP]
        vdi: String,
        /// The key
        key: String,
    },
    /// Set an attribute (replacing its value, unless --exclusive)
    Set {
        /// VDI[@SNAP]
        vdi: String,
        /// The key (1 to 255 bytes)
        key: String,
        /// The value (up to 64 KiB); or --file
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        value: Option<String>,
        /// Read the value from this file (- for stdin)
        #[arg(long, value_name = "FILE")]
        file: Option<String>,
        /// Fail if the key exists (atomic across the cluster: a lock)
        #[arg(long)]
        exclusive: bool,
    },
    /// Delete an attribute
    Delete {
        /// VDI[@SNAP]
        vdi: String,
        /// The key
        key: String,
    },
}

pub fn exec(g: &Global, c: &Command) -> Result<(), CliError> {
    match c {
        Command::List { vdi, json } => list(g, vdi, *json),
        Command::Get { vdi, key } => get(g, vdi, key),
        Command::Set {
            vdi,
            key,
            value,
            file,
            exclusive,
        } => set(g, vdi, key, value.as_deref(), file.as_deref(), *exclusive),
        Command::Delete { vdi, key } => delete(g, vdi, key),
    }
}

/// The snapshot id `t` names (0 for the working VDI). A snapshot's
/// attributes are kept under its id, whether it is named by tag or by id,
/// so that `VDI@TAG` and `VDI@ID` are the same attributes.
fn snap_id_of(g: &Global, t: &Target) -> Result<u32, CliError> {
    if t.snapshot.is_none() {
        return Ok(0);
    }
    let mut c = g.connect(t)?;
    let info = session::open(&mut c, t, false)?;
    session::close(&mut c, &t.display())?;
    Ok(info.snap_id)
}

/// What the attribute of `t` (snapshot `snap_id`) with `key` is sent as.
fn encoded(t: &Target, snap_id: u32, key: &str, value: &[u8]) -> Result<Vec<u8>, CliError> {
    attrs::encoded(&t.name, snap_id, key.as_bytes(), value)
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
fn get(g: &Global, vdi: &str, key: &str) -> Result<(), CliError> {
    let t = Target::parse(vdi)?;
    let buf = encoded(&t, snap_id_of(g, &t)?, key, &[])?;
    let mut client = g.connect(&t)?;
    let op = attrs::exchange(&mut client, buf, AttrKind::Get)?;
    match op.outcome() {
        Some(Ok(AttrDone::Value(a, _))) => {
            let mut out = std::io::stdout();
            out.write_all(a.value)
                .and_then(|()| out.flush())
                .map_err(|e| CliError::msg(format!("cannot write to stdout: {e}")))
        }
        Some(Ok(AttrDone::Done)) | None => Err(CliError::msg(format!(
            "the server at {} did not answer for {}",
            client.addr,
            what(&t, key)
        ))),
        Some(Err(e)) => Err(failed(&t, key, e)),
    }
}

/// `attr set VDI[@SNAP] KEY VALUE|--file F [--exclusive]`
fn set(
    g: &Global,
    vdi: &str,
    key: &str,
    value: Option<&str>,
    file: Option<&str>,
    exclusive: bool,
) -> Result<(), CliError> {
    let t = Target::parse(vdi)?;
    let value: Vec<u8> = match (value, file) {
        (Some(v), None) => v.as_bytes().to_vec(),
        (None, Some(f)) => {
            let name = if f == crate::io::STDIO { "stdin" } else { f };
            read_value(&mut *input::reader(f)?, name)?
        }
        _ => {
            return Err(CliError::msg(
                "attr set takes the value as an argument or from --file, not both",
            ))
        }
    };
    let buf = encoded(&t, snap_id_of(g, &t)?, key, &value)?;
    control(g, &t, key, buf, AttrKind::Set { exclusive })?;
    g.note(format!("set {} ({} bytes)", what(&t, key), value.len()));
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
fn delete(g: &Global, vdi: &str, key: &str) -> Result<(), CliError> {
    let t = Target::parse(vdi)?;
    let buf = encoded(&t, snap_id_of(g, &t)?, key, &[])?;
    control(g, &t, key, buf, AttrKind::Delete)?;
    g.note(format!("deleted {}", what(&t, key)));
    Ok(())
}

/// A set or delete of the attribute `buf` of `t`.
fn control(
    g: &Global,
    t: &Target,
    key: &str,
    buf: Vec<u8>,
    kind: AttrKind,
) -> Result<(), CliError> {
    let mut client = g.connect(t)?;
    let op = attrs::exchange(&mut client, buf, kind)?;
    match op.outcome() {
        Some(Ok(_)) => Ok(()),
        Some(Err(e)) => Err(failed(t, key, e)),
        None => Err(CliError::msg(format!(
            "the server at {} did not answer for {}",
            client.addr,
            what(t, key)
        ))),
    }
}

/// `attr list VDI[@SNAP] [--json]`: every attribute of the VDI (with
/// `@SNAP`, of that snapshot only).
fn list(g: &Global, vdi: &str, json: bool) -> Result<(), CliError> {
    let t = Target::parse(vdi)?;
    let snap_id = snap_id_of(g, &t)?;
    let mut client = g.connect(&t)?;
    // The VDI's VIDs: it must exist, and their tags name the snapshots.
    // (sheep keeps attributes by name: those a deleted VDI of the same
    // name left are this one's too, for dog's getattr as for ours.)
    let family: Vec<VdiRow> = collect(&mut g.connect(&t)?)?
        .into_iter()
        .filter(|r| r.name() == t.name)
        .collect();
    if family.is_empty() {
        return Err(CliError::msg(format!("no such VDI: {}", t.name)));
    }
    let rows: Vec<Row> = attrs::list(&mut client, &t.name, g.timeout)?
        .iter()
        .filter(|a| t.snapshot.is_none() || a.snap_id == snap_id && a.tag.is_empty())
        .map(|a| Row::of(a, &family))
        .collect();
    let mut rows = rows;
    rows.sort_by(|a, b| (&a.snapshot, &a.key).cmp(&(&b.snapshot, &b.key)));
    print_rows(&rows, json, g.quiet);
    Ok(())
}

struct Row {
    key: String,
    value: Vec<u8>,
    snapshot: String,
}

impl Row {
    fn of(a: &Attribute, family: &[VdiRow]) -> Row {
        let snapshot = if !a.tag.is_empty() {
            String::from_utf8_lossy(&a.tag).into_owned()
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
            key: String::from_utf8_lossy(&a.key).into_owned(),
            value: a.value.clone(),
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
