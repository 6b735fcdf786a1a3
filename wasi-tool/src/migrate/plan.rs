//! The plan of one VDI's migration, a pure function: what the source
//! holds (a [`Family`]) against what the target holds of its image
//! ([`TargetState`]) gives the steps, in order. A rerun plans again from
//! the target, which is the record of what is done: a snapshot the target
//! has is never shipped again, and one it lacks is shipped from the
//! newest it has.

use super::source::Family;

/// What the target holds of one image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetState {
    /// The image exists.
    pub exists: bool,
    /// Migrate made it from this VDI (its mark says so).
    pub ours: bool,
    /// It is a clone (made from the origin's image).
    pub cloned: bool,
    /// Its snapshots, oldest first.
    pub snapshots: Vec<String>,
}

/// What a diff starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Base {
    /// Nothing: every allocated object goes.
    Nothing,
    /// The family's snapshot at this index (shipped before).
    Snapshot(usize),
    /// The snapshot the family was cloned from (on the clone's parent).
    Origin,
}

/// One step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Make the image, marked as this VDI's.
    Create,
    /// Make the image a clone of the origin's image at the origin's
    /// snapshot (protected first, as Ceph requires).
    Clone,
    /// Ship the family's snapshot `to` as a diff from `base`; the target
    /// makes the snapshot once every write of it is done.
    Ship {
        /// What the diff starts from.
        base: Base,
        /// The snapshot, by index.
        to: usize,
    },
    /// A snapshot migrate took on an earlier run and no later diff needs:
    /// removed from the target, then from the source.
    Forget {
        /// Its index.
        snapshot: usize,
    },
    /// A snapshot migrate took that only the target has now (the source
    /// removed it after a later run, to another target): no diff can
    /// start from it, so it goes (a backup set keeps it).
    Drop {
        /// Its name on the target.
        name: String,
    },
}

/// Why a family cannot be planned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The image is there, and not migrate's work from this VDI.
    Foreign,
    /// The image has a snapshot the VDI has not.
    Unknown(String),
    /// The image lacks a snapshot that comes before one it has.
    Gap {
        /// The snapshot it lacks.
        missing: String,
        /// The one it has after it.
        after: String,
    },
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Foreign => f.write_str(
                "the target image exists and is not this VDI's migration: refused, never overwritten",
            ),
            Refused::Unknown(s) => write!(
                f,
                "the target image has snapshot {s}, which the VDI has not: refused, never overwritten"
            ),
            Refused::Gap { missing, after } => write!(
                f,
                "the target image lacks snapshot {missing} but has {after}, which comes after it"
            ),
        }
    }
}

/// The steps that bring `target` up to `family`. `origin_shipped`: the
/// snapshot the family was cloned from is on the target (as a snapshot of
/// its parent's image); `flatten`: make no clone even so.
pub fn plan(
    family: &Family,
    target: &TargetState,
    origin_shipped: bool,
    flatten: bool,
) -> Result<Vec<Step>, Refused> {
    if target.exists && !target.ours {
        return Err(Refused::Foreign);
    }
    let index = |name: &str| family.snapshots.iter().position(|s| s.name == name);
    let mut have = Vec::new();
    for t in &target.snapshots {
        match index(t) {
            Some(i) => have.push(i),
            // Migrate's own, gone from the source since (a backup set
            // keeps them: its later diffs start from them).
            None if t.starts_with(super::source::MIGRATE_PREFIX) => {}
            None => return Err(Refused::Unknown(t.clone())),
        }
    }
    let last = have.iter().copied().max();
    if let Some(last) = last {
        // Snapshots before the newest the target has are all there, but
        // for migrate's own, which are removed once the next is shipped.
        for (i, s) in family.snapshots.iter().enumerate().take(last) {
            if !have.contains(&i) && !s.is_migrate() {
                return Err(Refused::Gap {
                    missing: s.name.clone(),
                    after: family.snapshots[last].name.clone(),
                });
            }
        }
    }
    let mut steps = Vec::new();
    let clone = family.origin.is_some() && origin_shipped && !flatten;
    let mut base = match (target.exists, last) {
        (_, Some(l)) => Base::Snapshot(l),
        (true, None) if target.cloned => Base::Origin,
        (true, None) => Base::Nothing,
        (false, None) if clone => {
            steps.push(Step::Clone);
            Base::Origin
        }
        (false, None) => {
            steps.push(Step::Create);
            Base::Nothing
        }
    };
    let first = last.map_or(0, |l| l + 1);
    let newest = family.snapshots.len().checked_sub(1);
    for to in first..family.snapshots.len() {
        // A snapshot migrate took on a run that did not finish is a state
        // nobody asked to keep: the diff goes past it.
        if family.snapshots[to].is_migrate() && Some(to) != newest {
            continue;
        }
        steps.push(Step::Ship { base, to });
        base = Base::Snapshot(to);
    }
    // Every snapshot migrate took but the newest is needed no more; but
    // for a clone's oldest VID, which names the snapshot it was cloned
    // from (the clone itself, turned snapshot by migrate's first run).
    for (i, s) in family.snapshots.iter().enumerate() {
        let clone_root = i == 0 && family.origin.is_some();
        if s.is_migrate() && Some(i) != newest && !clone_root {
            steps.push(Step::Forget { snapshot: i });
        }
    }
    for t in &target.snapshots {
        if t.starts_with(super::source::MIGRATE_PREFIX) && index(t).is_none() {
            steps.push(Step::Drop { name: t.clone() });
        }
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::source::{Origin, Snapshot};

    fn family(names: &[&str], origin: bool) -> Family {
        Family {
            name: "vm".into(),
            snapshots: names
                .iter()
                .enumerate()
                .map(|(i, n)| Snapshot {
                    vid: 100 + i as u32,
                    snap_id: i as u32 + 1,
                    tag: n.to_string(),
                    name: n.to_string(),
                    ctime: 0,
                    size: 1 << 30,
                    vm_state_size: 0,
                    vm_clock_nsec: 0,
                })
                .collect(),
            working: Some(crate::migrate::source::Working {
                vid: 200,
                snap_id: names.len() as u32 + 1,
                size: 1 << 30,
            }),
            origin: origin.then(|| Origin {
                name: "base".into(),
                snap_id: 1,
                vid: 7,
            }),
            object_size: 4 << 20,
            copies: "3".into(),
            hyper: false,
        }
    }

    fn target(names: &[&str]) -> TargetState {
        TargetState {
            exists: true,
            ours: true,
            cloned: false,
            snapshots: names.iter().map(|s| s.to_string()).collect(),
        }
    }

    use Base::*;
    use Step::*;

    #[test]
    fn a_fresh_image_gets_every_snapshot_full_first_then_increments() {
        let f = family(&["a", "b", "migrate-1"], false);
        let steps = plan(&f, &TargetState::default(), false, false).unwrap();
        assert_eq!(
            steps,
            [
                Create,
                Ship {
                    base: Nothing,
                    to: 0
                },
                Ship {
                    base: Snapshot(0),
                    to: 1
                },
                Ship {
                    base: Snapshot(1),
                    to: 2
                },
            ]
        );
    }

    #[test]
    fn a_rerun_ships_only_what_the_target_lacks_and_forgets_old_migrate_snapshots() {
        // Shipped a, b and migrate-1 before; since, snapshot c and this
        // run's migrate-2.
        let f = family(&["a", "b", "migrate-1", "c", "migrate-2"], false);
        let steps = plan(&f, &target(&["a", "b", "migrate-1"]), false, false).unwrap();
        assert_eq!(
            steps,
            [
                Ship {
                    base: Snapshot(2),
                    to: 3
                },
                Ship {
                    base: Snapshot(3),
                    to: 4
                },
                Forget { snapshot: 2 },
            ]
        );
        // Nothing new: nothing to do (a run that takes no snapshot).
        let f = family(&["a", "b"], false);
        assert_eq!(plan(&f, &target(&["a", "b"]), false, false).unwrap(), []);
    }

    #[test]
    fn snapshots_runs_took_and_did_not_ship_are_passed_over() {
        // Three runs killed after their snapshot, before shipping it.
        let f = family(&["a", "migrate-1", "migrate-2", "b", "migrate-3"], false);
        let steps = plan(&f, &target(&["a"]), false, false).unwrap();
        assert_eq!(
            steps,
            [
                Ship {
                    base: Snapshot(0),
                    to: 3
                },
                Ship {
                    base: Snapshot(3),
                    to: 4
                },
                Forget { snapshot: 1 },
                Forget { snapshot: 2 },
            ]
        );
    }

    #[test]
    fn a_killed_run_is_finished_without_redoing_what_is_done() {
        // Killed after migrate-1 reached the target and before its
        // removal from the source after migrate-2 was shipped: the
        // target lacks migrate-1, which comes before migrate-2.
        let f = family(&["a", "migrate-1", "migrate-2"], false);
        let steps = plan(&f, &target(&["a", "migrate-2"]), false, false).unwrap();
        assert_eq!(steps, [Forget { snapshot: 1 }]);
        // Killed before the first snapshot was made on the target: the
        // image is there and empty; it is shipped again, whole.
        let f = family(&["a"], false);
        let steps = plan(&f, &target(&[]), false, false).unwrap();
        assert_eq!(
            steps,
            [Ship {
                base: Nothing,
                to: 0
            }]
        );
    }

    #[test]
    fn a_clone_is_made_from_its_parent_unless_flattened_or_the_parent_is_not_there() {
        let f = family(&["x"], true);
        assert_eq!(
            plan(&f, &TargetState::default(), true, false).unwrap(),
            [
                Clone,
                Ship {
                    base: Origin,
                    to: 0
                }
            ]
        );
        assert_eq!(
            plan(&f, &TargetState::default(), true, true).unwrap(),
            [
                Create,
                Ship {
                    base: Nothing,
                    to: 0
                }
            ]
        );
        assert_eq!(
            plan(&f, &TargetState::default(), false, false).unwrap(),
            [
                Create,
                Ship {
                    base: Nothing,
                    to: 0
                }
            ]
        );
        // Its first migrate snapshot is its oldest VID, which keeps the
        // link to its origin: kept.
        let f2 = family(&["migrate-1", "migrate-2"], true);
        assert_eq!(
            plan(&f2, &target(&["migrate-1"]), true, false).unwrap(),
            [Ship {
                base: Snapshot(0),
                to: 1
            }]
        );
        // A clone made before a kill: its first diff is still from the
        // origin.
        let mut t = target(&[]);
        t.cloned = true;
        assert_eq!(
            plan(&f, &t, true, false).unwrap(),
            [Ship {
                base: Origin,
                to: 0
            }]
        );
    }

    #[test]
    fn an_image_that_is_not_this_vdis_chain_is_refused() {
        let f = family(&["a", "b"], false);
        let mut foreign = target(&[]);
        foreign.ours = false;
        assert_eq!(plan(&f, &foreign, false, false), Err(Refused::Foreign));
        assert_eq!(
            plan(&f, &target(&["zzz"]), false, false),
            Err(Refused::Unknown("zzz".into()))
        );
        // Migrate's own snapshots that the source removed since are fine.
        assert_eq!(
            plan(&f, &target(&["a", "migrate-0", "b"]), false, false),
            Ok(vec![Drop {
                name: "migrate-0".into()
            }])
        );
        assert_eq!(
            plan(&f, &target(&["b"]), false, false),
            Err(Refused::Gap {
                missing: "a".into(),
                after: "b".into()
            })
        );
    }
}
