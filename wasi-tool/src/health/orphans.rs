//! Objects the nodes store that nothing reaches (PROTOCOL.md §14.4): what
//! `dog vdi delete` leaves (VM states of deleted snapshots, attributes of
//! deleted VDIs), what a failed write or a lost node leaves, and inodes
//! of VIDs no longer in use.
//!
//! Every node's list (GET_OBJ_LIST) is read first; then what is reached,
//! from every VID in use, deleted ones included (READ_VDIS): its inode,
//! the data objects its index or B-tree names (a deleted snapshot's
//! objects that a clone or child still names stay reached), its B-tree
//! leaves, the VM state of a VDI not deleted, the ledgers of reached data
//! objects, and the attributes of every name a VDI still has (attribute
//! slots are probed in a chain: one gone would hide the ones after it).
//! Reading the references after the lists means an object written after
//! the lists is not listed, and one listed is judged by references at
//! least as new. An inode that cannot be read makes the census partial:
//! nothing it might reach is called an orphan, and nothing is deleted.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use sheepdog_core::attr::ATTR_LEN;
use sheepdog_core::bitmap::VdiBitmap;
use sheepdog_core::erasure::Code;
use sheepdog_core::hash::vid_hash;
use sheepdog_core::inode::{trim_nul, INODE_OBJECT_LEN};
use sheepdog_core::oid::{Oid, OidKind, LEDGER_BIT};
use sheepdog_core::placement::Ring;

use super::objects::{self, Known};
use super::peers::{Answer, Ask, Peers};
use crate::cluster::client::Client;
use crate::cluster::{objects as listing, states};
use crate::error::CliError;

/// An object nothing reaches.
#[derive(Clone, Debug)]
pub struct Orphan {
    /// The object.
    pub oid: Oid,
    /// The nodes that hold a copy (indexes of the node list).
    pub holders: Vec<usize>,
    /// Bytes its copies take (stored size × copies).
    pub bytes: u64,
}

/// What the census found.
#[derive(Debug, Default)]
pub struct Census {
    /// Objects stored (each once, whatever its copies).
    pub objects: usize,
    /// Objects nothing reaches, by oid.
    pub orphans: Vec<Orphan>,
    /// Inodes that could not be read: why, per VDI.
    pub unknown: Vec<String>,
}

/// Take the census of the cluster whose nodes are `nodes`, asking
/// `client` for the VDIs.
pub fn census(
    client: &mut Client,
    nodes: &[SocketAddr],
    timeout: Duration,
) -> Result<Census, CliError> {
    let mut holders: HashMap<Oid, Vec<usize>> = HashMap::new();
    for (n, addr) in nodes.iter().enumerate() {
        for oid in listing::of_node(&addr.to_string(), timeout)? {
            holders.entry(oid).or_default().push(n);
        }
    }
    let in_use = states::bitmap(client, false)?;
    let deleted = states::bitmap(client, true)?;
    let in_use = VdiBitmap::new_checked(&in_use[..]).map_err(|e| CliError::msg(e.to_string()))?;
    let deleted = VdiBitmap::new_checked(&deleted[..]).map_err(|e| CliError::msg(e.to_string()))?;
    let known: HashMap<u32, states::State> = states::vdi_states(client)?
        .into_iter()
        .map(|s| (s.vid, s))
        .collect();
    let mut reached: HashSet<Oid> = HashSet::new();
    let mut names: HashSet<u32> = HashSet::new();
    let mut census = Census::default();
    for vid in in_use.iter() {
        let s = known.get(&vid);
        let k = Known {
            vid,
            copies: s.map_or(0, |s| s.nr_copies),
            copy_policy: s.map_or(0, |s| s.copy_policy),
            block_size_shift: s.map_or(22, |s| s.block_size_shift),
        };
        let v = objects::volume(client, k, format!("VID {vid:x}"))?;
        if let Some(why) = &v.broken {
            census.unknown.push(format!("VID {vid:x}: {why}"));
        }
        let gone = deleted.contains(vid);
        if let Some(h) = &v.header {
            if !h.is_deleted() {
                names.insert(vid_hash(trim_nul(&h.name)));
            }
        }
        reached.extend(
            v.objects
                .iter()
                .filter(|o| !(gone && o.kind() == OidKind::Vmstate)),
        );
    }
    census.objects = holders.len();
    let partial = !census.unknown.is_empty();
    let mut orphans: Vec<Orphan> = holders
        .into_iter()
        .filter(|(oid, _)| !is_reached(*oid, &reached, &names))
        // With an inode unread, any object of a VID in use might be
        // reached by it (a clone names its parents' objects), and any
        // attribute might be of its name: only what belongs to no VID in
        // use is certain.
        .filter(|(oid, _)| {
            !partial || (oid.kind() != OidKind::Attr && !in_use.contains(oid.vid_bits()))
        })
        .map(|(oid, holders)| {
            let bytes = stored_size(oid, &known) * holders.len() as u64;
            Orphan {
                oid,
                holders,
                bytes,
            }
        })
        .collect();
    orphans.sort_by_key(|o| o.oid);
    census.orphans = orphans;
    Ok(census)
}

/// Whether something reaches `oid`.
fn is_reached(oid: Oid, reached: &HashSet<Oid>, names: &HashSet<u32>) -> bool {
    match oid.kind() {
        OidKind::Attr => names.contains(&oid.vid_bits()),
        OidKind::Ledger => reached.contains(&Oid(oid.0 & !LEDGER_BIT)),
        _ => reached.contains(&oid),
    }
}

/// Bytes one node's copy of `oid` takes.
fn stored_size(oid: Oid, known: &HashMap<u32, states::State>) -> u64 {
    let s = known.get(&oid.vid_bits());
    let object = 1u64 << s.map_or(22, |s| s.block_size_shift).clamp(20, 31);
    match oid.kind() {
        OidKind::Inode => u64::from(INODE_OBJECT_LEN),
        OidKind::Attr => ATTR_LEN as u64,
        OidKind::Btree | OidKind::Ledger => 4 << 20,
        OidKind::Data | OidKind::Vmstate => match s.map(|s| s.copy_policy).filter(|p| *p != 0) {
            Some(p) => Code::from_policy(p).map_or(object, |c| object / u64::from(c.data())),
            None => object,
        },
    }
}

/// Remove every copy of each orphan (REMOVE_PEER on each node that holds
/// one, its strip index from the placement for an erasure-coded object).
/// Returns the orphans removed, and the failures by message.
pub fn delete(
    peers: &mut Peers,
    ring: &Ring<'_>,
    orphans: &[Orphan],
    copy_policy: impl Fn(u32) -> u8,
) -> Result<(usize, Vec<String>), CliError> {
    let mut asks = Vec::new();
    let mut owner = Vec::new();
    for (i, o) in orphans.iter().enumerate() {
        let coded = matches!(o.oid.kind(), OidKind::Data | OidKind::Vmstate)
            .then(|| Code::from_policy(copy_policy(o.oid.vid_bits())).ok())
            .flatten();
        let targets = coded.map(|c| ring.targets(o.oid, c.strips() as usize));
        for &n in &o.holders {
            let ec_index = targets
                .and_then(|t| t.as_slice().iter().position(|&x| x as usize == n))
                .unwrap_or(0) as u8;
            asks.push((
                n,
                Ask::Remove {
                    oid: o.oid,
                    ec_index,
                },
            ));
            owner.push(i);
        }
    }
    let mut failed_objects = HashSet::new();
    let mut failures = Vec::new();
    for (chunk, owners) in asks.chunks(1024).zip(owner.chunks(1024)) {
        let answers = peers.run(chunk)?;
        for ((ask, a), &i) in chunk.iter().zip(answers).zip(owners) {
            if let Answer::Refused(r) = a {
                failed_objects.insert(i);
                failures.push(format!(
                    "cannot remove {} from {}: {r}",
                    orphans[i].oid,
                    peers.addr(ask.0)
                ));
            }
        }
    }
    Ok((orphans.len() - failed_objects.len(), failures))
}
