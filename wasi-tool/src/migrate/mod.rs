//! Moving VDIs off the cluster, with their history: each VDI's snapshots,
//! oldest first, as diffs into a target (a Ceph pool through `rbd`, or a
//! backup set in a directory), clones after their parents, attributes and
//! VM states with them.
//!
//! - `source.rs`: the families of the listing (a VDI, its snapshots, its
//!   clone origin), the names they take, waves and shards.
//! - `plan.rs`: the pure planner: source against target, the steps.
//! - `prepare.rs`: one VDI's snapshot taken, target read, plan made.
//! - `ship.rs`: one VDI's plan run; `progress.rs`: the total.
//! - `target.rs`, `rbd.rs`, `dir.rs`: where the steps land.
//! - `crc.rs`: each object's checksum, carried along the chain.
//! - `restore.rs`: a backup set back into the cluster.
//!
//! A run prepares every VDI first (so progress knows the total and a
//! clone knows whether its parent is coming), then ships them, each wave
//! of clones after the wave of their parents, `--jobs` VDIs at once.
//!
//! A run takes a snapshot of every working VDI (`migrate-<UTC time>`) and
//! ships it after the VDI's own, so a VM keeps running while migrate runs
//! and a rerun ships only what changed since; the target is the record of
//! what is done, so a run killed at any moment is finished by the next.

pub mod crc;
pub mod dir;
pub mod plan;
pub mod prepare;
pub mod progress;
pub mod rbd;
pub mod restore;
pub mod ship;
pub mod source;
pub mod target;

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::cluster::vdis::collect;
use crate::cluster::{attrs, Client, Gateways};
use crate::date;
use crate::error::CliError;
use crate::size::human;
use crate::target::{Snap, Target as Vdi};
use plan::{Base, Step};
use prepare::Prepared;
use progress::Progress;
use source::{Family, MIGRATE_PREFIX};
use target::Target;

/// Where to.
pub enum To {
    /// `rbd:POOL`.
    Rbd(rbd::Rbd),
    /// A backup set.
    Dir(String),
}

impl To {
    fn open(&self) -> Result<Box<dyn Target>, CliError> {
        Ok(match self {
            To::Rbd(r) => Box::new(r.clone()),
            To::Dir(d) => Box::new(dir::Dir::new(d)?),
        })
    }
}

/// How to migrate.
pub struct Config {
    /// The cluster's nodes.
    pub gateways: Gateways,
    /// Only these VDIs (none: every one).
    pub vdis: Vec<String>,
    /// VDIs at once.
    pub jobs: usize,
    /// Only the VDIs of shard `i` of `n`.
    pub shard: Option<(u32, u32)>,
    /// Read each shipped snapshot back and compare.
    pub verify: bool,
    /// Make clones whole images.
    pub flatten: bool,
    /// Plan only.
    pub dry_run: bool,
    /// Say nothing but errors.
    pub quiet: bool,
    /// Objects read at once per VDI.
    pub depth: usize,
    /// Bounds each node's object list (attributes).
    pub timeout: Duration,
}

/// What one VDI's migration did.
#[derive(Debug, Default)]
pub struct Report {
    /// The VDI.
    pub name: String,
    /// Snapshots shipped (target names).
    pub shipped: Vec<String>,
    /// Bytes of diffs shipped.
    pub bytes: u64,
    /// Bytes the plan expects to ship (dry run: nothing is shipped).
    pub planned: u64,
    /// Seconds it took.
    pub seconds: f64,
    /// Why it failed, naming the step.
    pub error: Option<String>,
}

impl Report {
    fn failed(name: &str, e: &CliError) -> Report {
        Report {
            name: name.to_owned(),
            error: Some(e.to_string()),
            ..Report::default()
        }
    }
}

/// What the run read of the source once, for every VDI: its families,
/// and the attribute objects the nodes store.
pub struct Source<'a> {
    /// Every family of the cluster.
    pub all: &'a [Family],
    /// Every attribute object.
    pub attr_oids: &'a std::collections::BTreeSet<sheepdog_core::oid::Oid>,
}

/// `migrate-YYYYMMDDTHHMMSSZ` for now.
fn migrate_tag() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let t = date::iso(secs).replace(['-', ':'], "");
    format!("{MIGRATE_PREFIX}{t}")
}

/// A snapshot of `name` by id.
fn vdi(name: &str, snap_id: u32) -> Vdi {
    Vdi {
        server: None,
        name: name.to_owned(),
        snapshot: Some(Snap::Id(snap_id)),
    }
}

/// `f` over `items`, `jobs` at once; the results in the items' order. The
/// WASI component has no threads: one at a time there.
fn parallel<T: Send, R: Send>(items: Vec<T>, jobs: usize, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    if jobs <= 1 || cfg!(target_os = "wasi") {
        return items.into_iter().map(f).collect();
    }
    let n = items.len();
    let queue = Mutex::new(items.into_iter().enumerate().collect::<VecDeque<_>>());
    let out = Mutex::new(Vec::with_capacity(n));
    std::thread::scope(|s| {
        for _ in 0..jobs.min(n) {
            s.spawn(|| loop {
                let Some((i, item)) = queue.lock().ok().and_then(|mut q| q.pop_front()) else {
                    return;
                };
                let r = f(item);
                if let Ok(mut o) = out.lock() {
                    o.push((i, r));
                }
            });
        }
    });
    let mut out = out.into_inner().unwrap_or_default();
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

/// Migrate what `cfg` says into `to`; one report per VDI, by name.
pub fn run(cfg: &Config, to: &To) -> Result<Vec<Report>, CliError> {
    if cfg.jobs == 0 {
        return Err(CliError::msg("bad --jobs 0: at least 1"));
    }
    let mut client = Client::connect(cfg.gateways.clone(), cfg.quiet)?;
    let all = source::families(&collect(&mut client)?);
    drop(client);
    let mut reports = Vec::new();
    for v in &cfg.vdis {
        if !all.iter().any(|f| &f.name == v) {
            let e = CliError::msg(format!("{v}: no such VDI"));
            eprintln!("error: {e}");
            reports.push(Report::failed(v, &e));
        }
    }
    let chosen: Vec<Family> = all
        .iter()
        .filter(|f| cfg.vdis.is_empty() || cfg.vdis.contains(&f.name))
        .filter(|f| {
            cfg.shard
                .is_none_or(|(i, n)| source::in_shard(source::root(&all, &f.name), i, n))
        })
        .cloned()
        .collect();
    let tag = migrate_tag();
    // Prepare, wave by wave: a clone learns whether its parent comes.
    let mut prepared: Vec<Vec<Prepared>> = Vec::new();
    let mut ready: HashSet<String> = HashSet::new();
    for wave in source::waves(chosen) {
        let names: Vec<String> = wave.iter().map(|f| f.name.clone()).collect();
        let done = parallel(wave, cfg.jobs, |f| {
            prepare::prepare(cfg, to, &all, f, &tag, &ready)
        });
        let mut here = Vec::new();
        for (name, p) in names.iter().zip(done) {
            match p {
                Ok(p) => {
                    ready.insert(name.clone());
                    here.push(p);
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    reports.push(Report::failed(name, &e));
                }
            }
        }
        prepared.push(here);
    }
    if cfg.dry_run {
        for p in prepared.iter().flatten() {
            print_plan(p, &*to.open()?);
            reports.push(Report {
                name: p.family.name.clone(),
                planned: p.planned,
                ..Report::default()
            });
        }
        reports.sort_by(|a, b| a.name.cmp(&b.name));
        return Ok(reports);
    }
    // Attributes sit in objects no request lists by VDI: every node's
    // object list, read once for all the VDIs.
    let mut client = Client::connect(cfg.gateways.clone(), cfg.quiet)?;
    let attr_oids = attrs::objects(&mut client, cfg.timeout)?;
    drop(client);
    let source = Source {
        all: &all,
        attr_oids: &attr_oids,
    };
    reports.extend(ship_waves(cfg, to, &source, prepared));
    reports.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(reports)
}

/// Ship the prepared VDIs, wave by wave: a clone whose parent failed in
/// this run is not made.
fn ship_waves(
    cfg: &Config,
    to: &To,
    source: &Source<'_>,
    prepared: Vec<Vec<Prepared>>,
) -> Vec<Report> {
    let mut reports = Vec::new();
    let expected = prepared.iter().flatten().map(|p| p.planned).sum();
    let progress = Mutex::new(Progress::new(expected, cfg.quiet));
    let failed: Mutex<HashSet<String>> = Mutex::new(HashSet::new());
    for wave in prepared {
        let done = parallel(wave, cfg.jobs, |p| {
            let start = Instant::now();
            let mut report = Report {
                name: p.family.name.clone(),
                planned: p.planned,
                ..Report::default()
            };
            let parent_failed = p.steps.contains(&Step::Clone)
                && p.origin
                    .as_ref()
                    .is_some_and(|(parent, _)| failed.lock().is_ok_and(|f| f.contains(parent)));
            let res = if parent_failed {
                Err(CliError::msg(format!(
                    "{}: clone: its parent {} was not migrated",
                    p.family.name,
                    p.origin.as_ref().map_or("", |o| o.0.as_str())
                )))
            } else {
                ship::ship(cfg, to, source, &p, &progress, &mut report)
            };
            report.seconds = start.elapsed().as_secs_f64();
            if let Err(e) = res {
                eprintln!("error: {e}");
                report.error = Some(e.to_string());
                if let Ok(mut f) = failed.lock() {
                    f.insert(p.family.name.clone());
                }
            }
            report
        });
        reports.extend(done);
    }
    reports
}

/// The JSON summary of `reports`.
pub fn summary(reports: &[Report], seconds: f64) -> Value {
    let bytes: u64 = reports.iter().map(|r| r.bytes).sum();
    json!({
        "vdis": reports.iter().map(|r| json!({
            "name": r.name,
            "ok": r.error.is_none(),
            "error": r.error,
            "shipped": r.shipped,
            "bytes": r.bytes,
            "planned_bytes": r.planned,
            "seconds": r.seconds,
        })).collect::<Vec<_>>(),
        "bytes": bytes,
        "planned_bytes": reports.iter().map(|r| r.planned).sum::<u64>(),
        "seconds": seconds,
        "failed": reports.iter().filter(|r| r.error.is_some()).count(),
    })
}

/// `--dry-run`: the plan of one VDI, on stdout.
fn print_plan(p: &Prepared, target: &dyn Target) {
    let family = &p.family;
    let snap = |i: usize| family.snapshots[i].name.as_str();
    let lines: Vec<String> = p
        .steps
        .iter()
        .map(|s| match s {
            Step::Create => format!("create {}", target.show(&family.name)),
            Step::Clone => format!(
                "clone {} from {}",
                target.show(&family.name),
                p.origin
                    .as_ref()
                    .map_or("?".to_owned(), |(v, s)| format!("{v}@{s}"))
            ),
            Step::Ship { base, to } => format!(
                "ship {}{}",
                snap(*to),
                match base {
                    Base::Nothing => " (whole)".to_owned(),
                    Base::Snapshot(i) => format!(" from {}", snap(*i)),
                    Base::Origin => " (from the clone's origin)".to_owned(),
                }
            ),
            Step::Forget { snapshot } => format!("forget {}", snap(*snapshot)),
            Step::Drop { name } => format!("forget {name} on the target"),
        })
        .collect();
    println!(
        "{}: {} (about {})",
        family.name,
        if lines.is_empty() {
            "nothing to do".to_owned()
        } else {
            lines.join(", ")
        },
        human(p.planned)
    );
}
