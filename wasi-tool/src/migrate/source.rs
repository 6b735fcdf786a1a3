//! What the source cluster holds, as migrate sees it: each VDI name with
//! its snapshots in order, the name each takes on the target, and where a
//! clone comes from. Built from the listing alone (`cluster::vdis`), a
//! pure function of it.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::cluster::vdis::VdiRow;

/// The tag of the snapshots migrate takes of a working VDI.
pub const MIGRATE_PREFIX: &str = "migrate-";

/// One snapshot of a family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Its VID.
    pub vid: u32,
    /// Its snapshot id.
    pub snap_id: u32,
    /// Its tag (empty if none).
    pub tag: String,
    /// Its name on the target: the tag, or `snap-ID` for an untagged or
    /// clashing one.
    pub name: String,
    /// Creation time, seconds since 1970.
    pub ctime: u64,
    /// Virtual size.
    pub size: u64,
    /// Bytes of VM state kept with it.
    pub vm_state_size: u64,
    /// The VM clock recorded with it.
    pub vm_clock_nsec: u64,
}

impl Snapshot {
    /// Whether migrate took it (of the working VDI, to ship its state).
    pub fn is_migrate(&self) -> bool {
        self.tag.starts_with(MIGRATE_PREFIX)
    }
}

/// Where a clone comes from: a snapshot of another VDI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The VDI the snapshot is of.
    pub name: String,
    /// The snapshot's id.
    pub snap_id: u32,
    /// The snapshot's VID.
    pub vid: u32,
}

/// A family's working VDI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Working {
    /// Its VID.
    pub vid: u32,
    /// Its snapshot id (the id its next snapshot takes).
    pub snap_id: u32,
    /// Its size.
    pub size: u64,
}

/// A VDI name with everything under it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Family {
    /// The VDI's name.
    pub name: String,
    /// Its snapshots, oldest first.
    pub snapshots: Vec<Snapshot>,
    /// Its working VDI (none when only snapshots are left).
    pub working: Option<Working>,
    /// The snapshot it was cloned from, if that is still there.
    pub origin: Option<Origin>,
    /// Object size in bytes.
    pub object_size: u64,
    /// Copies or erasure code, as `dog` shows it (`3`, `4:2`).
    pub copies: String,
    /// A hyper volume (B-tree index).
    pub hyper: bool,
}

impl Family {
    /// The size of the newest VID (working VDI, else last snapshot).
    pub fn size(&self) -> u64 {
        match (self.working, self.snapshots.last()) {
            (Some(w), _) => w.size,
            (None, Some(s)) => s.size,
            (None, None) => 0,
        }
    }
}

/// Whether `tag` can name an rbd snapshot and a file as it is.
fn plain_name(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 200
        && !tag.starts_with("snap-")
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.+:".contains(&b))
        && !tag.starts_with('.')
}

/// Every family of the listing `rows`, by name.
pub fn families(rows: &[VdiRow]) -> Vec<Family> {
    let by_vid: HashMap<u32, &VdiRow> = rows.iter().map(|r| (r.vid, r)).collect();
    let mut by_name: BTreeMap<&str, Vec<&VdiRow>> = BTreeMap::new();
    for r in rows {
        by_name.entry(&r.name).or_default().push(r);
    }
    let mut out = Vec::new();
    for (name, mut vids) in by_name {
        vids.sort_by_key(|r| (r.kind != 's', r.inode_snap_id));
        let oldest = vids
            .iter()
            .min_by_key(|r| r.inode_snap_id)
            .copied()
            .expect("a family has a VID");
        // The oldest VID of a clone names a snapshot of another VDI.
        let origin = by_vid
            .get(&oldest.parent)
            .filter(|p| p.kind == 's' && p.name != name)
            .map(|p| Origin {
                name: p.name.clone(),
                snap_id: p.snap_id,
                vid: p.vid,
            });
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for r in vids.iter().filter(|r| r.kind == 's') {
            *seen.entry(&r.tag).or_default() += 1;
        }
        let snapshots = vids
            .iter()
            .filter(|r| r.kind == 's')
            .map(|r| Snapshot {
                vid: r.vid,
                snap_id: r.snap_id,
                tag: r.tag.clone(),
                name: if plain_name(&r.tag) && seen[r.tag.as_str()] == 1 {
                    r.tag.clone()
                } else {
                    format!("snap-{}", r.snap_id)
                },
                ctime: r.ctime,
                size: r.size,
                vm_state_size: r.vm_state_size,
                vm_clock_nsec: r.vm_clock_nsec,
            })
            .collect();
        let working = vids.iter().find(|r| r.kind != 's').map(|r| Working {
            vid: r.vid,
            snap_id: r.inode_snap_id,
            size: r.size,
        });
        out.push(Family {
            name: name.to_owned(),
            snapshots,
            working,
            origin,
            object_size: 1u64 << oldest.block_size_shift.min(63),
            copies: oldest.redundancy.to_string(),
            hyper: oldest.hyper,
        });
    }
    out
}

/// The families in waves: each wave's clones come from families of the
/// waves before it (a clone's parent is migrated first).
pub fn waves(families: Vec<Family>) -> Vec<Vec<Family>> {
    let mut done: HashSet<String> = HashSet::new();
    let mut left = families;
    let mut out = Vec::new();
    while !left.is_empty() {
        let names: HashSet<String> = left.iter().map(|f| f.name.clone()).collect();
        let (ready, wait): (Vec<Family>, Vec<Family>) = left.into_iter().partition(|f| {
            f.origin
                .as_ref()
                .is_none_or(|o| done.contains(&o.name) || !names.contains(&o.name))
        });
        if ready.is_empty() {
            // A circle cannot be (a parent is older than its clone); take
            // the rest as they are rather than loop.
            out.push(wait);
            break;
        }
        done.extend(ready.iter().map(|f| f.name.clone()));
        out.push(ready);
        left = wait;
    }
    out
}

/// The name at the root of `name`'s clone tree: families that share a
/// root stay on one machine when migration is sharded.
pub fn root<'a>(families: &'a [Family], name: &'a str) -> &'a str {
    let by_name: HashMap<&str, &Family> = families.iter().map(|f| (f.name.as_str(), f)).collect();
    let mut at = name;
    for _ in 0..families.len() {
        match by_name.get(at).and_then(|f| f.origin.as_ref()) {
            Some(o) if by_name.contains_key(o.name.as_str()) => at = &o.name,
            _ => break,
        }
    }
    at
}

/// Whether `name` falls to shard `i` of `n`: FNV-1a of the name, stable
/// across machines and runs.
pub fn in_shard(name: &str, i: u32, n: u32) -> bool {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h % u64::from(n.max(1)) == u64::from(i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sheepdog_core::redundancy::Redundancy;

    fn row(name: &str, vid: u32, snap_id: u32, tag: &str, parent: u32, snapshot: bool) -> VdiRow {
        VdiRow {
            name: name.into(),
            kind: if snapshot { 's' } else { ' ' },
            snap_id: if snapshot { snap_id } else { 0 },
            inode_snap_id: snap_id,
            tag: tag.into(),
            size: 1 << 30,
            used: 0,
            shared: 0,
            ctime: 1000 + u64::from(snap_id),
            vid,
            parent,
            redundancy: Redundancy::Copies(3),
            block_size_shift: 22,
            vm_state_size: 0,
            vm_clock_nsec: 0,
            hyper: false,
        }
    }

    #[test]
    fn snapshots_in_order_with_target_names_and_clones_with_their_origin() {
        let rows = vec![
            row("vm", 10, 3, "", 11, false),
            row("vm", 12, 1, "before", 0, true),
            row("vm", 11, 2, "", 12, true),
            row("copy", 20, 1, "", 12, false),
            // Two snapshots with one tag, and a tag that is not a plain
            // name: both named by id.
            row("odd", 30, 1, "x", 0, true),
            row("odd", 31, 2, "x", 30, true),
            row("odd", 32, 3, "a/b", 31, true),
        ];
        let f = families(&rows);
        let names: Vec<&str> = f.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["copy", "odd", "vm"]);
        let vm = &f[2];
        let snaps: Vec<(&str, u32)> = vm
            .snapshots
            .iter()
            .map(|s| (s.name.as_str(), s.snap_id))
            .collect();
        assert_eq!(snaps, [("before", 1), ("snap-2", 2)]);
        assert_eq!(
            vm.working,
            Some(Working {
                vid: 10,
                snap_id: 3,
                size: 1 << 30
            })
        );
        assert_eq!(vm.origin, None);
        assert_eq!(
            f[0].origin,
            Some(Origin {
                name: "vm".into(),
                snap_id: 1,
                vid: 12
            })
        );
        let odd: Vec<&str> = f[1].snapshots.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(odd, ["snap-1", "snap-2", "snap-3"]);
        assert!(f[1].working.is_none());
        // Clones come after their parents.
        let w = waves(f);
        assert_eq!(w.len(), 2);
        assert_eq!(w[1][0].name, "copy");
    }

    #[test]
    fn shards_are_stable_and_cover_every_name_once() {
        let names: Vec<String> = (0..200).map(|i| format!("vm{i}")).collect();
        for n in 1..5 {
            for name in &names {
                let hits = (0..n).filter(|&i| in_shard(name, i, n)).count();
                assert_eq!(hits, 1, "{name} in {hits} of {n} shards");
            }
        }
        // Stable: the same answer as the FNV-1a reference value.
        assert!(in_shard("", (0xcbf2_9ce4_8422_2325u64 % 7) as u32, 7));
    }
}
