//! Every VDI and snapshot of the cluster (`core::list`), and how they are
//! shown: as `dog vdi list` prints them, or as JSON.

use std::io::{self, Read, Write};

use serde_json::json;
use sheepdog_core::inode::InodeHeader;
use sheepdog_core::list::{ListEvent, Lister};
use sheepdog_core::receive::{NoBuffers, Receiver};
use sheepdog_core::redundancy::Redundancy;
use sheepdog_core::wire::{HEADER_LEN, VDI_BITMAP_LEN};

use super::client::Client;
use crate::date;
use crate::error::{self, CliError};
use crate::size::human;

/// Index bytes read per request when counting used objects.
const INDEX_READ: usize = 1 << 20;

/// One line of the listing.
#[derive(Clone, Debug)]
pub struct VdiRow {
    /// The VDI's name.
    pub name: String,
    /// `s` a snapshot, `c` a clone, ` ` a working VDI.
    pub kind: char,
    /// Its snapshot id (0 for a working VDI).
    pub snap_id: u32,
    /// The inode's snapshot id, a working VDI's too (the id its next
    /// snapshot takes): the order of a VDI's VIDs.
    pub inode_snap_id: u32,
    /// Its tag (empty if none).
    pub tag: String,
    /// Virtual size in bytes.
    pub size: u64,
    /// Bytes of objects it owns.
    pub used: u64,
    /// Bytes of objects it shares with ancestors.
    pub shared: u64,
    /// Creation time, seconds since 1970.
    pub ctime: u64,
    /// Its VID.
    pub vid: u32,
    /// The VID it came from (0: none).
    pub parent: u32,
    /// Copies or erasure code.
    pub redundancy: Redundancy,
    /// Object size shift.
    pub block_size_shift: u8,
    /// Bytes of VM state kept with it (QEMU's savevm).
    pub vm_state_size: u64,
    /// The VM clock recorded with that state.
    pub vm_clock_nsec: u64,
    /// A hyper volume (B-tree index).
    pub hyper: bool,
}

impl VdiRow {
    /// A row from a header and its used and shared object counts.
    pub fn new(h: &InodeHeader, used: u32, shared: u32) -> VdiRow {
        let object = 1u64 << h.block_size_shift.min(63);
        VdiRow {
            name: String::from_utf8_lossy(h.name()).into_owned(),
            kind: if h.is_snapshot() {
                's'
            } else if h.is_clone() {
                'c'
            } else {
                ' '
            },
            snap_id: if h.is_snapshot() { h.snap_id } else { 0 },
            inode_snap_id: h.snap_id,
            tag: String::from_utf8_lossy(h.tag()).into_owned(),
            size: h.vdi_size,
            used: u64::from(used) * object,
            shared: u64::from(shared) * object,
            ctime: h.create_time >> 32,
            vid: h.vdi_id,
            parent: h.parent_vdi_id,
            redundancy: Redundancy::from_wire(h.nr_copies, h.copy_policy),
            block_size_shift: h.block_size_shift,
            vm_state_size: h.vm_state_size,
            vm_clock_nsec: h.vm_clock_nsec,
            hyper: h.is_hyper(),
        }
    }

    /// Whether it is a snapshot of the VDI `name`.
    pub fn is_snapshot_of(&self, name: &str) -> bool {
        self.kind == 's' && self.name == name
    }

    /// The VDI's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether it is a snapshot.
    pub fn is_snapshot(&self) -> bool {
        self.kind == 's'
    }

    /// Its snapshot id (0 for a working VDI).
    pub fn snap_id(&self) -> u32 {
        self.snap_id
    }

    /// Its tag (empty if none).
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// How an NBD client names it: `vdi` for a working VDI, `vdi@tag`
    /// (or `vdi@id` without a tag) for a snapshot.
    pub fn export_name(&self) -> String {
        match (self.kind, self.tag.is_empty()) {
            ('s', false) => format!("{}@{}", self.name, self.tag),
            ('s', true) => format!("{}@{}", self.name, self.snap_id),
            _ => self.name.clone(),
        }
    }

    /// The row as a JSON object (`list --json` prints an array of these).
    pub fn json(&self) -> serde_json::Value {
        json!({
            "name": self.name,
            "snapshot": self.kind == 's',
            "clone": self.kind == 'c',
            "snapshot_id": self.snap_id,
            "tag": self.tag,
            "size": self.size,
            "used": self.used,
            "shared": self.shared,
            "creation_time": self.ctime,
            "creation_time_utc": date::minutes(self.ctime),
            "vdi_id": format!("{:x}", self.vid),
            "parent_vdi_id": format!("{:x}", self.parent),
            "copies": self.redundancy.to_string(),
            "object_size": 1u64 << self.block_size_shift.min(63),
            "block_size_shift": self.block_size_shift,
            "vm_state_size": self.vm_state_size,
            "vm_clock_nsec": self.vm_clock_nsec,
            "hyper": self.hyper,
        })
    }
}

/// Print rows as a table (with `dog`'s columns) or as a JSON array.
pub fn print_entries(rows: &[VdiRow], json: bool, quiet: bool) {
    let mut out = std::io::stdout().lock();
    if json {
        let arr: Vec<_> = rows.iter().map(VdiRow::json).collect();
        let _ = writeln!(out, "{}", serde_json::Value::Array(arr));
        return;
    }
    if quiet {
        return;
    }
    // A VM state column only when a snapshot has one (QEMU's savevm):
    // otherwise the table is dog's.
    let vmstate = rows.iter().any(|r| r.vm_state_size > 0);
    let _ = writeln!(
        out,
        "  Name        Id    Size    Used  Shared    Creation time   VDI id  Copies  Tag   Block Size Shift{}",
        if vmstate { "  VM state" } else { "" }
    );
    for r in rows {
        let vm = match (vmstate, r.vm_state_size) {
            (false, _) => String::new(),
            (true, 0) => format!(" {:>9}", "-"),
            (true, n) => format!(" {:>9}", human(n)),
        };
        let _ = writeln!(
            out,
            "{} {:<8} {:>5} {:>7} {:>7} {:>7} {}  {:>7x} {:>6} {:>13} {:>3}{vm}",
            r.kind,
            r.name,
            r.snap_id,
            human(r.size),
            human(r.used),
            human(r.shared),
            date::minutes(r.ctime),
            r.vid,
            r.redundancy.to_string(),
            r.tag,
            r.block_size_shift
        );
    }
}

/// Read every VDI's header and usage.
pub fn collect(client: &mut Client) -> Result<Vec<VdiRow>, CliError> {
    let mut lister = Lister::new(
        vec![0u8; VDI_BITMAP_LEN],
        vec![0u8; VDI_BITMAP_LEN],
        INDEX_READ,
    )
    .map_err(|e| CliError::msg(format!("internal error: {e}")))?;
    let addr = client.addr.clone();
    let stream = client.stream();
    let mut scratch = vec![0u8; INDEX_READ];
    let mut buf = [0u8; HEADER_LEN];
    let mut rx = Receiver::new();
    let mut no_bufs = NoBuffers;
    let mut rows = Vec::new();
    loop {
        while let Some(ev) = lister.poll_event() {
            match ev {
                ListEvent::Vdi(e) => rows.push(VdiRow::new(&e.header, e.used, e.shared)),
                ListEvent::Done(Ok(())) => return Ok(rows),
                ListEvent::Done(Err(e)) => {
                    return Err(CliError::msg(format!("cannot list VDIs: {e}")))
                }
            }
        }
        let next = lister
            .poll_transmit(&mut buf)
            .map_err(|e| CliError::msg(format!("internal error: {e}")))?;
        match next {
            Some(n) => stream
                .write_all(&buf[..n])
                .map_err(|e| error::lost(&addr, &e))?,
            None => return Err(CliError::msg("internal error: the listing stalled")),
        }
        loop {
            let into = rx.buffer(&mut lister, &mut no_bufs, &mut scratch);
            let n = match stream.read(into) {
                Ok(0) => return Err(error::lost(&addr, &io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(error::lost(&addr, &e)),
            };
            match rx.advance(&mut lister, n, &scratch, 0) {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => {
                    return Err(CliError::msg(format!(
                        "the server at {addr} sent a bad reply: {e}"
                    )))
                }
            }
        }
    }
}
