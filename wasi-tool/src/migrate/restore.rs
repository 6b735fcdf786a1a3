//! `restore`: a backup set (`dir.rs`) back into a Sheepdog cluster, each
//! VDI with its snapshots (tagged with their names in the set), VM states
//! and attributes; clones after their parents, as clones of them.
//!
//! A restored VDI carries the attribute [`MARK`] (the VDI it was backed
//! up from): only such a VDI, or a new one, is written. Each snapshot is
//! its diff applied to the working VDI, then a snapshot tagged with its
//! name. The snapshots migrate took (`migrate-<time>`) are states of the
//! working VDI on the way: applied, not kept; the newest is the working
//! state. A rerun goes on after the newest snapshot the VDI has, so it
//! finishes what a killed run began, and restores only what is new from
//! a set that has grown since; a diff applied again over a partly applied
//! chain gives the same bytes.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::Value;
use sheepdog_core::attr::{AttrDone, AttrKind};
use sheepdog_core::engine::{ControlDone, CreateOptions};
use sheepdog_core::wire::ResultCode;

use super::dir::{clone_of, read_manifest, MANIFEST};
use super::source::MIGRATE_PREFIX;
use super::target::meta_bytes;
use super::Report;
use crate::cluster::session::{close, open, run as run_control, unexpected};
use crate::cluster::vdis::collect;
use crate::cluster::{attrs, vmstate, Client, Gateways};
use crate::error::{self, CliError};
use crate::size::{human, parse_copies};
use crate::target::{Snap, Target as Vdi};
use crate::transfer::diff_import::{self, Options};

/// The attribute a restored VDI carries: the name it was backed up as.
pub const MARK: &str = "sheep-tool.restored-from";

/// What to restore.
pub struct Config {
    /// The cluster's nodes.
    pub gateways: Gateways,
    /// The backup set.
    pub dir: String,
    /// Only these VDIs of the set (none: every one).
    pub vdis: Vec<String>,
    /// Restore the one VDI named under this name.
    pub rename: Option<String>,
    /// Say nothing but errors.
    pub quiet: bool,
    /// Writes in flight.
    pub depth: usize,
}

/// One snapshot of a manifest.
struct Entry {
    name: String,
    diff: String,
    vm_state: Option<(String, u64)>,
}

/// One VDI of the set.
struct Backup {
    /// Its name in the set.
    vdi: String,
    /// Its directory.
    dir: PathBuf,
    manifest: Value,
    /// `(parent, snapshot)` it was cloned from.
    clone_of: Option<(String, String)>,
}

impl Backup {
    fn load(root: &Path, vdi: &str) -> Result<Backup, CliError> {
        let dir = root.join(vdi);
        let path = dir.join(MANIFEST);
        let manifest = read_manifest(&path)?.ok_or_else(|| {
            CliError::msg(format!(
                "{}: no VDI {vdi} in the backup set",
                root.display()
            ))
        })?;
        let clone_of = clone_of(&manifest);
        Ok(Backup {
            vdi: vdi.to_owned(),
            dir,
            manifest,
            clone_of,
        })
    }

    fn field(&self, key: &str) -> Result<&Value, CliError> {
        self.manifest.get(key).ok_or_else(|| {
            CliError::msg(format!(
                "{}: the manifest has no {key}",
                self.dir.join(MANIFEST).display()
            ))
        })
    }

    fn entries(&self) -> Result<Vec<Entry>, CliError> {
        let bad = |what: &str| {
            CliError::msg(format!(
                "{}: a snapshot without {what}",
                self.dir.join(MANIFEST).display()
            ))
        };
        let mut out = Vec::new();
        for s in self.field("snapshots")?.as_array().into_iter().flatten() {
            let text = |k: &str| s.get(k).and_then(Value::as_str).map(str::to_owned);
            let name = text("name").ok_or_else(|| bad("a name"))?;
            let diff = text("diff").ok_or_else(|| bad("a diff file"))?;
            if diff.contains('/') || name.contains('/') {
                return Err(bad("a plain file name"));
            }
            let vm_state = s.get("vm_state").filter(|v| !v.is_null()).and_then(|v| {
                Some((
                    v.get("file")?.as_str()?.to_owned(),
                    v.get("vm_clock_nsec")?.as_u64()?,
                ))
            });
            out.push(Entry {
                name,
                diff,
                vm_state,
            });
        }
        Ok(out)
    }
}

/// The VDIs of the set at `root`: the ones named, or every directory with
/// a manifest; parents before their clones.
fn backups(root: &Path, named: &[String]) -> Result<Vec<Backup>, CliError> {
    let mut names: Vec<String> = named.to_vec();
    if names.is_empty() {
        let rd = std::fs::read_dir(root)
            .map_err(|e| error::file(&root.display().to_string(), "read", &e))?;
        for e in rd.filter_map(Result::ok) {
            if e.path().join(MANIFEST).is_file() {
                names.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        if names.is_empty() {
            return Err(CliError::msg(format!(
                "{}: not a backup set (no VDI directory with a {MANIFEST})",
                root.display()
            )));
        }
    }
    names.sort();
    let mut left = names
        .iter()
        .map(|n| Backup::load(root, n))
        .collect::<Result<Vec<_>, _>>()?;
    // Parents first: a clone waits for its parent when both are restored.
    let mut out = Vec::new();
    let mut done: HashSet<String> = HashSet::new();
    while !left.is_empty() {
        let here: HashSet<String> = left.iter().map(|b| b.vdi.clone()).collect();
        let (ready, wait): (Vec<Backup>, Vec<Backup>) = left.into_iter().partition(|b| {
            b.clone_of
                .as_ref()
                .is_none_or(|(p, _)| done.contains(p) || !here.contains(p))
        });
        if ready.is_empty() {
            out.extend(wait);
            break;
        }
        done.extend(ready.iter().map(|b| b.vdi.clone()));
        out.extend(ready);
        left = wait;
    }
    Ok(out)
}

/// Restore what `cfg` says; one report per VDI.
pub fn run(cfg: &Config) -> Result<Vec<Report>, CliError> {
    let root = Path::new(&cfg.dir);
    if cfg.rename.is_some() && cfg.vdis.len() != 1 {
        return Err(CliError::msg("--as takes exactly one VDI of the set"));
    }
    let sets = backups(root, &cfg.vdis)?;
    let mut reports = Vec::new();
    for b in sets {
        let name = cfg.rename.clone().unwrap_or_else(|| b.vdi.clone());
        let start = Instant::now();
        let mut report = Report {
            name: name.clone(),
            ..Report::default()
        };
        if let Err(e) = restore_one(cfg, &b, &name, &mut report) {
            eprintln!("error: {e}");
            report.error = Some(e.to_string());
        }
        report.seconds = start.elapsed().as_secs_f64();
        reports.push(report);
    }
    Ok(reports)
}

/// The snapshot tags of `name` on the cluster, and whether it exists.
fn on_cluster(client: &mut Client, name: &str) -> Result<(bool, Vec<(String, u32)>), CliError> {
    let rows = collect(client)?;
    let exists = rows.iter().any(|r| r.name() == name);
    let mut snaps: Vec<(u32, String)> = rows
        .iter()
        .filter(|r| r.is_snapshot_of(name))
        .map(|r| (r.snap_id(), r.tag().to_owned()))
        .collect();
    snaps.sort();
    Ok((exists, snaps.into_iter().map(|(id, t)| (t, id)).collect()))
}

fn working(name: &str) -> Vdi {
    Vdi {
        server: None,
        name: name.to_owned(),
        snapshot: None,
    }
}

/// The value of the attribute `key` of the working VDI `name`.
fn attribute(client: &mut Client, name: &str, key: &str) -> Result<Option<Vec<u8>>, CliError> {
    let buf = attrs::encoded(name, 0, key.as_bytes(), &[])?;
    let op = attrs::exchange(client, buf, AttrKind::Get)?;
    if op.refused_with(ResultCode::NoObj) {
        return Ok(None);
    }
    match op.outcome() {
        Some(Ok(AttrDone::Value(a, _))) => Ok(Some(a.value.to_vec())),
        Some(Err(e)) => Err(error::engine(&format!("attribute {key} of {name}"), e)),
        _ => Err(CliError::msg(format!(
            "the server at {} did not answer for attribute {key} of {name}",
            client.addr
        ))),
    }
}

/// One VDI of the set, as `name`.
fn restore_one(cfg: &Config, b: &Backup, name: &str, report: &mut Report) -> Result<(), CliError> {
    let step_err = |step: &str, e: CliError| CliError::msg(format!("{name}: {step}: {e}"));
    let mut client =
        Client::connect(cfg.gateways.clone(), true).map_err(|e| step_err("connect", e))?;
    let entries = b.entries().map_err(|e| step_err("manifest", e))?;
    let (exists, mut have) = on_cluster(&mut client, name).map_err(|e| step_err("list", e))?;
    if exists {
        let mark = attribute(&mut client, name, MARK).map_err(|e| step_err("check", e))?;
        if mark.as_deref() != Some(b.vdi.as_bytes()) {
            return Err(CliError::msg(format!(
                "{name}: the VDI exists and is not a restore of {}: refused, never overwritten",
                b.vdi
            )));
        }
        if let Some((t, _)) = have
            .iter()
            .find(|(t, _)| !entries.iter().any(|e| &e.name == t))
        {
            return Err(CliError::msg(format!(
                "{name}: the VDI has snapshot {t}, which the backup set has not: refused"
            )));
        }
    } else {
        make(b, name, &entries, &mut client).map_err(|e| step_err("create", e))?;
    }
    let hyper = b.manifest.get("hyper").and_then(Value::as_bool) == Some(true);
    let last = entries.len().saturating_sub(1);
    // On from the newest snapshot the VDI has: what comes after it was
    // not done, or not wholly (the diffs after it are applied again).
    let start = entries
        .iter()
        .rposition(|e| have.iter().any(|(t, _)| t == &e.name))
        .map_or(0, |i| i + 1);
    for (i, e) in entries.iter().enumerate().skip(start) {
        // A hyper volume has no snapshots: each of its diffs is whole, the
        // newest is all of it.
        if hyper && i != last {
            continue;
        }
        // Migrate's own snapshots are states of the working VDI on the
        // way: applied, not kept.
        let snapshot = !hyper && !e.name.starts_with(MIGRATE_PREFIX);
        let after_state = i > 0 && entries[i - 1].name.starts_with(MIGRATE_PREFIX);
        let tags: Vec<String> = have.iter().map(|(t, _)| t.clone()).collect();
        let (written, taken) = apply(cfg, b, name, e, (&tags, after_state), snapshot, &mut client)
            .map_err(|x| step_err(&format!("snapshot {}", e.name), x))?;
        report.bytes += written;
        if let Some(snap_id) = taken {
            report.shipped.push(e.name.clone());
            have.push((e.name.clone(), snap_id));
        }
        if !cfg.quiet {
            let what = if snapshot { "snapshot" } else { "state" };
            eprintln!("{name}: {what} {} restored ({})", e.name, human(written));
        }
    }
    restore_attributes(&mut client, b, name, &have).map_err(|e| step_err("attributes", e))?;
    if !cfg.quiet {
        eprintln!(
            "{name}: done, {} snapshot{} restored from {}",
            report.shipped.len(),
            if report.shipped.len() == 1 { "" } else { "s" },
            b.dir.display()
        );
    }
    Ok(())
}

/// Make `name`: a clone of its parent's snapshot, or a new VDI of the
/// set's geometry; then mark it.
fn make(b: &Backup, name: &str, entries: &[Entry], client: &mut Client) -> Result<(), CliError> {
    match &b.clone_of {
        Some((parent, snap)) => {
            let t = Vdi {
                server: None,
                name: parent.clone(),
                snapshot: Some(Snap::Tag(snap.clone())),
            };
            open(client, &t, false)?;
            let done = run_control(client, name, |e| e.clone_snapshot(name));
            close(client, &t.display())?;
            match done? {
                ControlDone::Cloned { .. } => {}
                other => return Err(unexpected(&other)),
            }
        }
        None => {
            let size = b
                .manifest
                .get("snapshots")
                .and_then(|s| s.get(0))
                .and_then(|s| s.get("size"))
                .or_else(|| b.manifest.get("size"))
                .and_then(Value::as_u64)
                .filter(|_| !entries.is_empty())
                .ok_or_else(|| CliError::msg("the backup set holds no snapshot of it"))?;
            let hyper = b.field("hyper")?.as_bool() == Some(true);
            let os = b.field("object_size")?.as_u64().unwrap_or(0);
            if !os.is_power_of_two() {
                return Err(CliError::msg(format!(
                    "the manifest's object size {os} is not one"
                )));
            }
            let copies = b.field("copies")?.as_str().unwrap_or_default();
            let redundancy = parse_copies(copies).map_err(CliError::msg)?;
            let opts = CreateOptions {
                size,
                redundancy,
                block_size_shift: if hyper { 0 } else { os.trailing_zeros() as u8 },
                prealloc: false,
                hyper,
            };
            match run_control(client, name, |e| e.create(name, opts))? {
                ControlDone::Created { .. } => {}
                other => return Err(unexpected(&other)),
            }
        }
    }
    attrs::set(client, name, 0, MARK.as_bytes(), b.vdi.as_bytes())
}

/// Apply snapshot `e`'s diff to the working VDI `name` (whose snapshots
/// are tagged `tags`; `force`: its FROM is a state restore does not keep),
/// then snapshot it with its VM state when `snapshot`: the bytes of data
/// written, and the id of the snapshot taken.
fn apply(
    cfg: &Config,
    b: &Backup,
    name: &str,
    e: &Entry,
    (tags, force): (&[String], bool),
    snapshot: bool,
    client: &mut Client,
) -> Result<(u64, Option<u32>), CliError> {
    let path = b.dir.join(&e.diff);
    let shown = path.display().to_string();
    let mut input = File::open(&path).map_err(|x| error::file(&shown, "read", &x))?;
    let t = working(name);
    let info = open(client, &t, false)?;
    let opts = Options {
        file: &shown,
        force,
        snapshots: tags,
        depth: cfg.depth,
        quiet: true,
    };
    let res = diff_import::apply(client, name, &mut input, &opts).and_then(|applied| {
        // The snapshot takes the working VDI's snapshot id.
        let taken = if snapshot {
            take(client, &cfg.gateways, b, name, e, &info)?;
            Some(info.snap_id)
        } else {
            None
        };
        Ok((applied.written, taken))
    });
    let closed = close(client, name);
    let n = res?;
    closed?;
    Ok(n)
}

/// Snapshot the open working VDI `name` tagged `e.name`, with the VM
/// state the set keeps for it.
fn take(
    client: &mut Client,
    gateways: &Gateways,
    b: &Backup,
    name: &str,
    e: &Entry,
    info: &sheepdog_core::engine::VolumeInfo,
) -> Result<(), CliError> {
    let what = format!("{name}@{}", e.name);
    let tag = e.name.as_str();
    let Some((file, clock)) = &e.vm_state else {
        return match run_control(client, &what, |x| x.snapshot(tag))? {
            ControlDone::Snapshot { .. } => Ok(()),
            other => Err(unexpected(&other)),
        };
    };
    let path = b.dir.join(file);
    let shown = path.display().to_string();
    let mut input = File::open(&path).map_err(|x| error::file(&shown, "read", &x))?;
    let mut written = Vec::new();
    let geometry = (info.vid, info.object_size, info.copies);
    let stored =
        vmstate::store(client, &mut input, &shown, name, geometry, &mut written).and_then(|size| {
            match run_control(client, &what, |x| {
                x.snapshot_with_vmstate(tag, size, *clock, info.vid)
            })? {
                ControlDone::Snapshot { snapshot, .. } if snapshot == info.vid => Ok(()),
                other => Err(unexpected(&other)),
            }
        });
    stored.map_err(|x| {
        vmstate::undo(
            || Client::connect(gateways.clone(), true),
            &working(name),
            (info.vid, info.copies),
            &written,
            x,
        )
    })
}

/// The set's attributes, each on the working VDI or on the snapshot of
/// its name (`have`: the VDI's snapshot tags and ids).
fn restore_attributes(
    client: &mut Client,
    b: &Backup,
    name: &str,
    have: &[(String, u32)],
) -> Result<(), CliError> {
    for a in b.field("attributes")?.as_array().into_iter().flatten() {
        let text = |k: &str| a.get(k).and_then(Value::as_str).unwrap_or_default();
        let key = meta_bytes(text("key"))?;
        let value = meta_bytes(text("value"))?;
        let snap_id = match a.get("snapshot").and_then(Value::as_str) {
            Some(s) => match have.iter().find(|(t, _)| t == s) {
                Some((_, id)) => *id,
                // Its snapshot is not restored (the working state of a
                // hyper volume): nowhere to keep it.
                None => continue,
            },
            None => 0,
        };
        if snap_id == 0 && key == MARK.as_bytes() {
            continue;
        }
        attrs::set(client, name, snap_id, &key, &value)?;
    }
    Ok(())
}
