//! One VDI made ready to ship: the snapshot of its working state taken,
//! what the target holds of it read, its plan made, and the bytes the
//! plan will ship counted from the indexes (what progress and
//! `--dry-run` show).

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use sheepdog_core::engine::ControlDone;

use super::plan::{self, Base, Step};
use super::source::{Family, Snapshot};
use super::{vdi, Config, To};
use crate::cluster::session::{close, open, run as run_control, unexpected};
use crate::cluster::Client;
use crate::error::CliError;
use crate::target::Target as Vdi;

/// A VDI with its plan.
pub struct Prepared {
    /// The VDI, with the snapshot of its working state last.
    pub family: Family,
    /// What to do.
    pub steps: Vec<Step>,
    /// Bytes the plan ships at most.
    pub planned: u64,
    /// A clone's parent VDI and the target name of the snapshot it was
    /// cloned from.
    pub origin: Option<(String, String)>,
}

/// Prepare `family` (one of `all`) for `to`; `tag` names the snapshot of
/// its working state, `parents` the VDIs this run prepared before it (a
/// clone of one of them is made as a clone).
pub fn prepare(
    cfg: &Config,
    to: &To,
    all: &[Family],
    mut family: Family,
    tag: &str,
    parents: &HashSet<String>,
) -> Result<Prepared, CliError> {
    let name = family.name.clone();
    let step_err = |step: &str, e: CliError| CliError::msg(format!("{name}: {step}: {e}"));
    let mut target = to.open()?;
    let mut client =
        Client::connect(cfg.gateways.clone(), true).map_err(|e| step_err("connect", e))?;
    // The working state goes through a snapshot taken once the plan is
    // made (a hyper volume has none: its working VDI is shipped whole,
    // under the snapshot's name).
    let live = family.working;
    // Two runs in one second: the second's tag gets a number.
    let tag = (1..)
        .map(|n| match n {
            1 => tag.to_owned(),
            n => format!("{tag}-{n}"),
        })
        .find(|t| !family.snapshots.iter().any(|s| &s.tag == t))
        .unwrap_or_default();
    if let Some(w) = live {
        family.snapshots.push(Snapshot {
            vid: w.vid,
            snap_id: w.snap_id,
            tag: tag.to_owned(),
            name: tag.to_owned(),
            ctime: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            size: w.size,
            vm_state_size: 0,
            vm_clock_nsec: 0,
        });
    }
    let state = target.state(&family).map_err(|e| step_err("target", e))?;
    let origin = family.origin.as_ref().and_then(|o| {
        all.iter()
            .find(|f| f.name == o.name)?
            .snapshots
            .iter()
            .find(|s| s.vid == o.vid)
            .map(|s| (o.name.clone(), s.name.clone()))
    });
    let origin_shipped = match &origin {
        Some((p, _)) if parents.contains(p) => true,
        Some((p, s)) => target
            .has_snapshot(p, s)
            .map_err(|e| step_err("target", e))?,
        None => false,
    };
    let steps = plan::plan(&family, &state, origin_shipped, cfg.flatten)
        .map_err(|e| CliError::msg(format!("{name}: {} ({})", e, target.show(&name))))?;
    // Only a VDI the target takes gets a snapshot.
    if live.is_some() && !family.hyper && !cfg.dry_run {
        take_snapshot(&mut client, &name, &tag).map_err(|e| step_err("snapshot", e))?;
    }
    let mut indexes = Indexes {
        client: &mut client,
        family: &family,
        live: live.is_some(),
        dry_run: cfg.dry_run,
        cache: vec![None; family.snapshots.len()],
    };
    let mut planned = 0;
    for s in &steps {
        if let Step::Ship { base, to } = *s {
            planned += indexes.changed(base, to).map_err(|e| step_err("plan", e))?;
        }
    }
    Ok(Prepared {
        family,
        steps,
        planned,
        origin,
    })
}

/// Snapshot the working VDI `name` with tag `tag`.
fn take_snapshot(client: &mut Client, name: &str, tag: &str) -> Result<(), CliError> {
    let t = Vdi {
        server: None,
        name: name.to_owned(),
        snapshot: None,
    };
    open(client, &t, false)?;
    let done = run_control(client, &format!("{name}@{tag}"), |e| e.snapshot(tag));
    close(client, name)?;
    match done? {
        ControlDone::Snapshot { .. } => Ok(()),
        other => Err(unexpected(&other)),
    }
}

/// The index entries of a family's snapshots, read once each.
struct Indexes<'a> {
    client: &'a mut Client,
    family: &'a Family,
    live: bool,
    dry_run: bool,
    cache: Vec<Option<Vec<u32>>>,
}

impl Indexes<'_> {
    /// Bytes a diff from `base` to snapshot `to` carries at most: every
    /// object allocated in `to` that is not the same one in `base`.
    fn changed(&mut self, base: Base, to: usize) -> Result<u64, CliError> {
        let e_to = self.of(to)?;
        let e_from = match base {
            Base::Snapshot(i) => Some(self.of(i)?),
            Base::Origin => match &self.family.origin {
                Some(o) => Some(entries(self.client, &vdi(&o.name, o.snap_id))?),
                None => None,
            },
            Base::Nothing => None,
        };
        let n = e_to
            .iter()
            .enumerate()
            .filter(|&(i, &e)| {
                let was = e_from.as_ref().and_then(|f| f.get(i)).copied().unwrap_or(0);
                e != 0 && e != was
            })
            .count();
        Ok(n as u64 * self.family.object_size)
    }

    /// Snapshot `i`'s entries (the working VDI for the snapshot a dry run
    /// would take, or a hyper volume's).
    fn of(&mut self, i: usize) -> Result<Vec<u32>, CliError> {
        if let Some(e) = &self.cache[i] {
            return Ok(e.clone());
        }
        let f = self.family;
        let last = i + 1 == f.snapshots.len();
        let t = if self.live && last && (f.hyper || self.dry_run) {
            Vdi {
                server: None,
                name: f.name.clone(),
                snapshot: None,
            }
        } else {
            vdi(&f.name, f.snapshots[i].snap_id)
        };
        let e = entries(self.client, &t)?;
        self.cache[i] = Some(e.clone());
        Ok(e)
    }
}

/// The index entries of `t`.
fn entries(client: &mut Client, t: &Vdi) -> Result<Vec<u32>, CliError> {
    let info = open(client, t, false)?;
    let n = info.size.div_ceil(u64::from(info.object_size)) as u32;
    let e = (0..n)
        .map(|i| client.engine.entry(i).unwrap_or(0))
        .collect();
    close(client, &t.display())?;
    Ok(e)
}
