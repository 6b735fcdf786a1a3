//! One prepared VDI shipped: its steps run in order against the target,
//! each snapshot's diff streamed from the cluster into it with the CRC32
//! of every object carried along (`--verify`, a backup set's manifest),
//! then its VM states and attributes.

use std::sync::Mutex;

use super::crc::ObjectCrcs;
use super::plan::{Base, Step};
use super::prepare::Prepared;
use super::progress::Progress;
use super::source::{Family, Snapshot};
use super::target::{From as TFrom, Target};
use super::{vdi, Config, Report, Source, To};
use crate::cluster::session::{close, open};
use crate::cluster::{attrs, delete, vmstate, Client};
use crate::error::CliError;
use crate::size::human;
use crate::target::Target as Vdi;
use crate::transfer::diff_export::{self, Names, Observer};

/// Run `p`'s plan into `to`; `source` is what the run read of the cluster.
pub fn ship(
    cfg: &Config,
    to: &To,
    source: &Source<'_>,
    p: &Prepared,
    progress: &Mutex<Progress>,
    report: &mut Report,
) -> Result<(), CliError> {
    let family = &p.family;
    let name = family.name.clone();
    let step_err = |step: &str, e: CliError| CliError::msg(format!("{name}: {step}: {e}"));
    let client = Client::connect(cfg.gateways.clone(), true).map_err(|e| step_err("connect", e))?;
    let mut sh = Shipping {
        cfg,
        family,
        origin: p.origin.as_ref(),
        target: to.open()?,
        client,
        carried: None,
        needs_crcs: cfg.verify || matches!(to, To::Dir(_)),
        // An image made by this run holds nothing it does not know of;
        // one made before may (a killed run's writes), until the first
        // ship.
        clean: p
            .steps
            .iter()
            .any(|s| matches!(s, Step::Create | Step::Clone)),
    };
    for s in &p.steps {
        match s {
            Step::Create => sh
                .target
                .create(family)
                .map_err(|e| step_err("create", e))?,
            Step::Clone => {
                let (parent, snap) = p.origin.clone().unwrap_or_default();
                sh.target
                    .clone_of(family, &parent, &snap)
                    .map_err(|e| step_err("clone", e))?;
            }
            Step::Ship { base, to: i } => {
                let snap = &family.snapshots[*i];
                let bytes = sh.snapshot(*base, *i)?;
                report.shipped.push(snap.name.clone());
                report.bytes += bytes;
                if let Ok(mut t) = progress.lock() {
                    t.shipped(&format!("{name}@{}", snap.name), bytes);
                }
            }
            Step::Forget { snapshot } => {
                let snap = &family.snapshots[*snapshot];
                // A snapshot someone cloned stays: the clone needs it.
                let cloned = source
                    .all
                    .iter()
                    .any(|f| f.origin.as_ref().is_some_and(|o| o.vid == snap.vid));
                if !cloned {
                    sh.forget(snap)
                        .map_err(|e| step_err(&format!("forget {}", snap.name), e))?;
                }
            }
            Step::Drop { name: snap } => sh
                .target
                .forget(family, snap)
                .map_err(|e| step_err(&format!("forget {snap}"), e))?,
        }
    }
    let Shipping {
        mut target,
        mut client,
        ..
    } = sh;
    let res = vm_states(&mut client, &mut *target, family)
        .map_err(|e| step_err("VM state", e))
        .and_then(|()| {
            let attrs = attrs::read(&mut client, &name, source.attr_oids)
                .map_err(|e| step_err("attributes", e))?;
            target
                .attributes(family, &attrs)
                .map_err(|e| step_err("attributes", e))
        });
    let settled = target.settle().map_err(|e| step_err("forget", e));
    res?;
    settled?;
    if !cfg.quiet {
        eprintln!(
            "{name}: done, {} snapshot{} shipped ({}) to {}",
            report.shipped.len(),
            if report.shipped.len() == 1 { "" } else { "s" },
            human(report.bytes),
            target.show(&name)
        );
    }
    Ok(())
}

/// One VDI being shipped: its target, its connection, and what carries
/// from one snapshot to the next.
struct Shipping<'a> {
    cfg: &'a Config,
    family: &'a Family,
    /// A clone's parent VDI and the target name of its snapshot.
    origin: Option<&'a (String, String)>,
    target: Box<dyn Target>,
    client: Client,
    /// The checksums of the snapshot shipped last, and its index.
    carried: Option<(usize, ObjectCrcs)>,
    /// Checksums are kept (`--verify`, a backup set's manifest).
    needs_crcs: bool,
    /// The image holds nothing a diff does not know of.
    clean: bool,
}

impl Shipping<'_> {
    /// Ship snapshot `i` from `base` and read it back if asked: the bytes
    /// of its diff. Errors name the VDI and the step.
    fn snapshot(&mut self, base: Base, i: usize) -> Result<u64, CliError> {
        let (cfg, family) = (self.cfg, self.family);
        let snap = &family.snapshots[i];
        let step_err = |step: &str, e: CliError| {
            CliError::msg(format!("{}: {step} {}: {e}", family.name, snap.name))
        };
        let mut crcs = if self.needs_crcs {
            let carried = self.carried.take();
            let mut seed = seed_crcs(
                cfg,
                &mut self.client,
                &mut *self.target,
                (family, self.origin),
                base,
                carried,
            )
            .map_err(|e| step_err("ship", e))?;
            Some(seed.next(snap.size))
        } else {
            None
        };
        let forced = if self.clean {
            Vec::new()
        } else {
            let extents = self
                .target
                .changed_since(family, tfrom(family, base))
                .map_err(|e| step_err("ship", e))?;
            objects_of(&extents, family.object_size)
        };
        self.clean = true;
        let bytes = ship_one(
            cfg,
            &mut *self.target,
            family,
            (base, &forced),
            snap,
            crcs.as_mut(),
        )
        .map_err(|e| step_err("ship", e))?;
        let sums: Vec<u32> = crcs.as_mut().map(|c| c.all().to_vec()).unwrap_or_default();
        self.target
            .shipped(family, tfrom(family, base), snap, &sums)
            .map_err(|e| step_err("ship", e))?;
        if cfg.verify {
            let got = self
                .target
                .read_back(family, snap)
                .map_err(|e| step_err("verify", e))?;
            compare(
                &family.name,
                snap,
                &got,
                &sums,
                &self.target.show(&family.name),
            )?;
        }
        self.carried = crcs.map(|c| (i, c));
        Ok(bytes)
    }

    /// Remove `snap` (migrate's own) from the target, then the source.
    fn forget(&mut self, snap: &Snapshot) -> Result<(), CliError> {
        self.target.forget(self.family, &snap.name)?;
        delete::delete(&mut self.client, &vdi(&self.family.name, snap.snap_id)).map(|_| ())
    }
}

/// The VM state of every snapshot the target holds without one.
fn vm_states(
    client: &mut Client,
    target: &mut dyn Target,
    family: &Family,
) -> Result<(), CliError> {
    let states: Vec<&Snapshot> = family
        .snapshots
        .iter()
        .filter(|s| s.vm_state_size > 0)
        .collect();
    if states.is_empty() {
        return Ok(());
    }
    let held = target.state(family)?.snapshots;
    for snap in states {
        if !held.contains(&snap.name) || target.has_vmstate(family, snap)? {
            continue;
        }
        let what = format!("{}@{}", family.name, snap.name);
        let geometry = (snap.vid, family.object_size as u32, snap.vm_state_size);
        target.vmstate(family, snap, &mut |w| {
            vmstate::read(client, w, &what, geometry, &|e| {
                CliError::msg(format!("writing the VM state of {what}: {e}"))
            })
        })?;
    }
    Ok(())
}

fn tfrom(family: &Family, base: Base) -> TFrom<'_> {
    match base {
        Base::Nothing => TFrom::Nothing,
        Base::Snapshot(i) => TFrom::Snapshot(&family.snapshots[i].name),
        Base::Origin => TFrom::Origin,
    }
}

/// The checksums of what a diff from `base` starts from: carried from the
/// last ship, kept by the target, or read from the source.
fn seed_crcs(
    cfg: &Config,
    client: &mut Client,
    target: &mut dyn Target,
    (family, origin): (&Family, Option<&(String, String)>),
    base: Base,
    carried: Option<(usize, ObjectCrcs)>,
) -> Result<ObjectCrcs, CliError> {
    let os = family.object_size;
    match base {
        Base::Nothing => Ok(ObjectCrcs::zeros(os, 0)),
        Base::Snapshot(i) => {
            if let Some((_, c)) = carried.filter(|(j, _)| *j == i) {
                return Ok(c);
            }
            let snap = &family.snapshots[i];
            if let Some((size, v)) = target.kept_crcs(&family.name, &snap.name) {
                return Ok(ObjectCrcs::from_vec(os, size, v));
            }
            read_crcs(cfg, client, &vdi(&family.name, snap.snap_id), os)
        }
        Base::Origin => {
            let o = family
                .origin
                .as_ref()
                .ok_or_else(|| CliError::msg("internal error: a clone without its origin"))?;
            // The parent's snapshot, as the target keeps it under its name.
            let kept = origin.and_then(|(parent, snap)| target.kept_crcs(parent, snap));
            if let Some((size, v)) = kept {
                return Ok(ObjectCrcs::from_vec(os, size, v));
            }
            read_crcs(cfg, client, &vdi(&o.name, o.snap_id), os)
        }
    }
}

/// The checksums of every object of `t`, read from the source.
fn read_crcs(cfg: &Config, client: &mut Client, t: &Vdi, os: u64) -> Result<ObjectCrcs, CliError> {
    let info = open(client, t, false)?;
    let mut c = ObjectCrcs::zeros(os, info.size);
    let names = Names {
        from: None,
        to: None,
    };
    let res = diff_export::write_observed(
        client,
        None,
        &names,
        cfg.depth,
        &mut std::io::sink(),
        &t.display(),
        Some(&mut c as &mut dyn Observer),
    );
    close(client, &t.display())?;
    res?;
    Ok(c)
}

/// The objects of `os` bytes that the extents touch.
fn objects_of(extents: &[(u64, u64)], os: u64) -> Vec<u32> {
    let mut out: Vec<u32> = extents
        .iter()
        .filter(|&&(_, len)| len > 0)
        .flat_map(|&(off, len)| (off / os)..=((off + len - 1) / os))
        .filter_map(|i| u32::try_from(i).ok())
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Write snapshot `snap`'s diff from `base` (with the objects `forced`
/// sent whole) into the target, each object's bytes shown to `crcs`; the
/// bytes of the stream.
fn ship_one(
    cfg: &Config,
    target: &mut dyn Target,
    family: &Family,
    (base, forced): (Base, &[u32]),
    snap: &Snapshot,
    crcs: Option<&mut ObjectCrcs>,
) -> Result<u64, CliError> {
    let mut client = Client::connect(cfg.gateways.clone(), true)?;
    // The newest snapshot of a hyper volume is its working VDI.
    let to_vdi = if family.hyper && family.working.is_some_and(|w| w.vid == snap.vid) {
        Vdi {
            server: None,
            name: family.name.clone(),
            snapshot: None,
        }
    } else {
        vdi(&family.name, snap.snap_id)
    };
    let from_vdi = match base {
        Base::Nothing => None,
        Base::Snapshot(i) => Some(vdi(&family.name, family.snapshots[i].snap_id)),
        Base::Origin => family.origin.as_ref().map(|o| vdi(&o.name, o.snap_id)),
    };
    let from = match from_vdi {
        Some(t) => {
            let c = Client::connect(cfg.gateways.clone(), true)?;
            Some(diff_export::From::read(c, &t, false)?)
        }
        None => None,
    };
    let mut from = diff_export::From::forcing(from, forced);
    open(&mut client, &to_vdi, false)?;
    let names = Names {
        from: match base {
            Base::Snapshot(i) => Some(family.snapshots[i].name.as_str()),
            _ => None,
        },
        to: Some(&snap.name),
    };
    let shown = to_vdi.display();
    let mut observer = crcs;
    let res = target.ship(family, tfrom(family, base), snap, &mut |w| {
        diff_export::write_observed(
            &mut client,
            from.as_mut(),
            &names,
            cfg.depth,
            w,
            &shown,
            observer.as_deref_mut().map(|c| c as &mut dyn Observer),
        )
        .map(|_| ())
    });
    let closed = close(&mut client, &shown);
    let n = res?;
    closed?;
    Ok(n)
}

/// `--verify`: the target's checksums `got` against the source's `want`.
fn compare(
    name: &str,
    snap: &Snapshot,
    got: &[u32],
    want: &[u32],
    at: &str,
) -> Result<(), CliError> {
    if let Some(i) = got.iter().zip(want).position(|(g, w)| g != w) {
        return Err(CliError::msg(format!(
            "{name}: verify failed: object {i} of snapshot {} in {at} has CRC32 {:08x}, \
             the source {:08x}",
            snap.name, got[i], want[i]
        )));
    }
    if got.len() != want.len() {
        return Err(CliError::msg(format!(
            "{name}: verify failed: snapshot {} has {} objects in {at}, the source {}",
            snap.name,
            got.len(),
            want.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::objects_of;

    #[test]
    fn extents_become_the_objects_they_touch() {
        let os = 4 << 20;
        assert_eq!(objects_of(&[], os), Vec::<u32>::new());
        // Within one object, across two, empty, and overlapping.
        let got = objects_of(&[(4096, 512), (os - 1, 2), (9 * os, 0), (os, os)], os);
        assert_eq!(got, [0, 1]);
        assert_eq!(objects_of(&[(2 * os, 3 * os)], os), [2, 3, 4]);
    }
}
