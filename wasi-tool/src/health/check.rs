//! Check every copy of every object of some VDIs, and repair what can be
//! repaired (PROTOCOL.md §14): each object's copies are where sheep's
//! placement puts them; a replica is judged by the SHA-1 its node gives
//! (GET_HASH), the strips of an erasure-coded object by reading them
//! (READ_PEER) and decoding. A bad or missing replica is repaired by its
//! node copying the good one (REPAIR_REPLICA); a bad or missing strip is
//! rebuilt from the good ones and written to its node
//! (CREATE_AND_WRITE_PEER). Repaired objects are checked again. Objects
//! go out in batches to every node at once (`peers`), so a large VDI
//! costs a round trip per batch, not per object.

use std::collections::HashSet;
use std::net::SocketAddr;

use sha1::{Digest as _, Sha1};
use sheepdog_core::attr::ATTR_LEN;
use sheepdog_core::erasure::Code;
use sheepdog_core::inode::INODE_OBJECT_LEN;
use sheepdog_core::oid::{Oid, OidKind};
use sheepdog_core::placement::Ring;
use sheepdog_core::verdict::{Copy, Digest, Verdict};
use sheepdog_core::wire::ResultCode;

use super::objects::Volume;
use super::peers::{Answer, Ask, Peers};
use crate::error::CliError;

/// Replicated objects per batch.
const HASH_BATCH: usize = 512;
/// Strip bytes read per batch.
const READ_BATCH_BYTES: usize = 64 << 20;

/// One copy of an object as found.
#[derive(Clone, Debug)]
pub struct CopyFound {
    /// Its place in the placement (the strip index when erasure-coded).
    pub index: u8,
    /// The node that should hold it.
    pub node: SocketAddr,
    /// What was found.
    pub state: Copy,
    /// What the node said, when it refused.
    pub note: Option<String>,
}

/// An object whose copies are not all good.
#[derive(Clone, Debug)]
pub struct Finding {
    /// The VDI it was found through.
    pub vdi: String,
    /// The object.
    pub oid: Oid,
    /// Strips (erasure-coded) rather than replicas.
    pub strips: bool,
    /// Every copy.
    pub copies: Vec<CopyFound>,
    /// A good copy exists to repair from.
    pub repairable: bool,
    /// It was repaired and found good afterwards.
    pub repaired: bool,
}

/// What a check found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Objects checked.
    pub objects: u64,
    /// Copies checked.
    pub copies: u64,
    /// Objects with copies not all good.
    pub findings: Vec<Finding>,
}

/// One object to check, with its placement.
struct Item {
    vdi: usize,
    oid: Oid,
    targets: Vec<usize>,
    code: Option<Code>,
    /// Bytes read of each copy: a strip, or a whole replica with `deep`;
    /// 0 when replicas are judged by the digest their nodes give.
    read_len: u32,
}

/// How a check goes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mode {
    /// Repair bad and missing copies.
    pub repair: bool,
    /// Read every replica whole and hash it here, rather than take the
    /// digest its node gives (which sheep caches for snapshots' objects).
    pub deep: bool,
}

/// Bytes of a whole replica of `oid` in a VDI of `object_size` objects.
fn replica_len(oid: Oid, object_size: u32) -> u32 {
    match oid.kind() {
        OidKind::Inode => INODE_OBJECT_LEN,
        OidKind::Attr => ATTR_LEN as u32,
        OidKind::Btree | OidKind::Ledger => 4 << 20,
        OidKind::Data | OidKind::Vmstate => object_size,
    }
}

/// Check the objects of `volumes` (an object shared by several is checked
/// once), as `mode` says.
pub fn check(
    peers: &mut Peers,
    ring: &Ring<'_>,
    volumes: &[Volume],
    mode: Mode,
    mut progress: impl FnMut(u64),
) -> Result<Outcome, CliError> {
    let zones = ring.zones();
    let mut seen = HashSet::new();
    let mut items = Vec::new();
    for (vi, v) in volumes.iter().enumerate() {
        let code = match v.copy_policy {
            0 => None,
            p => {
                Some(Code::from_policy(p).map_err(|e| CliError::msg(format!("{}: {e}", v.label)))?)
            }
        };
        if let Some(c) = code {
            if zones < c.strips() as usize {
                return Err(CliError::msg(format!(
                    "{} is erasure-coded {}:{} and the cluster has {zones} zones: its strips cannot all be checked",
                    v.label,
                    c.data(),
                    c.parity()
                )));
            }
        }
        for &oid in &v.objects {
            if !seen.insert(oid) {
                continue;
            }
            let coded = code.filter(|_| matches!(oid.kind(), OidKind::Data | OidKind::Vmstate));
            let copies = match coded {
                Some(c) => c.strips() as usize,
                None => (v.copies as usize).min(zones),
            };
            let targets = ring
                .targets(oid, copies)
                .as_slice()
                .iter()
                .map(|&n| n as usize)
                .collect();
            let read_len = match coded {
                Some(c) => c.strip_len(v.object_size as usize) as u32,
                None if mode.deep => replica_len(oid, v.object_size),
                None => 0,
            };
            items.push(Item {
                vdi: vi,
                oid,
                targets,
                code: coded,
                read_len,
            });
        }
    }
    let mut out = Outcome::default();
    let mut start = 0;
    while start < items.len() {
        let end = batch_end(&items, start);
        let batch = &items[start..end];
        let found = judge(peers, batch)?;
        for (item, (verdict, notes, strips)) in batch.iter().zip(found) {
            out.objects += 1;
            out.copies += item.targets.len() as u64;
            if verdict.is_clean() {
                continue;
            }
            let mut f = finding(peers, volumes, item, &verdict, notes);
            if mode.repair && f.repairable {
                f.repaired = fix(peers, item, &verdict, &strips)?;
            }
            out.findings.push(f);
        }
        progress(out.objects);
        start = end;
    }
    Ok(out)
}

fn batch_end(items: &[Item], start: usize) -> usize {
    let mut bytes = 0usize;
    let mut end = start;
    while end < items.len() && end - start < HASH_BATCH {
        let i = &items[end];
        bytes += i.read_len as usize * i.targets.len();
        if end > start && bytes > READ_BATCH_BYTES {
            break;
        }
        end += 1;
    }
    end
}

type Judged = (Verdict, Vec<Option<String>>, Vec<Option<Vec<u8>>>);

/// Ask every copy of every item, and judge each item.
fn judge(peers: &mut Peers, batch: &[Item]) -> Result<Vec<Judged>, CliError> {
    let mut asks = Vec::new();
    for item in batch {
        for (k, &n) in item.targets.iter().enumerate() {
            let ask = match (item.code, item.read_len) {
                (None, 0) => Ask::Hash(item.oid),
                (Some(_), len) => Ask::Read {
                    oid: item.oid,
                    ec_index: k as u8,
                    len,
                },
                (None, len) => Ask::Read {
                    oid: item.oid,
                    ec_index: 0,
                    len,
                },
            };
            asks.push((n, ask));
        }
    }
    let mut answers = peers.run(&asks)?.into_iter();
    let mut out = Vec::with_capacity(batch.len());
    for item in batch {
        let mut notes = Vec::new();
        let mut digests: Vec<Option<Digest>> = Vec::new();
        let mut strips: Vec<Option<Vec<u8>>> = Vec::new();
        for _ in &item.targets {
            let a = answers.next().expect("an answer per ask");
            let note = match &a {
                Answer::Refused(ResultCode::NoObj) | Answer::Hash(_) | Answer::Data(_) => None,
                Answer::Refused(r @ (ResultCode::OldNodeVer | ResultCode::NewNodeVer)) => {
                    return Err(CliError::msg(format!(
                        "the cluster's nodes changed during the check ({r}); run it again"
                    )))
                }
                Answer::Refused(r) => Some(format!("{r}")),
                Answer::Done => None,
            };
            notes.push(note);
            match a {
                Answer::Hash(d) => digests.push(Some(d)),
                Answer::Data(b) if item.code.is_none() => {
                    digests.push(Some(Sha1::digest(&b).into()));
                }
                Answer::Data(b) => strips.push(Some(b)),
                _ => {
                    digests.push(None);
                    strips.push(None);
                }
            }
        }
        let verdict = match item.code {
            Some(code) => {
                let views: Vec<Option<&[u8]>> = strips.iter().map(|s| s.as_deref()).collect();
                let mut scratch = vec![0u8; item.read_len as usize];
                Verdict::of_strips(&code, &views, &mut scratch)
            }
            None => Verdict::of(&digests),
        };
        out.push((verdict, notes, strips));
    }
    Ok(out)
}

fn finding(
    peers: &Peers,
    volumes: &[Volume],
    item: &Item,
    verdict: &Verdict,
    notes: Vec<Option<String>>,
) -> Finding {
    let copies = item
        .targets
        .iter()
        .zip(verdict.copies.iter())
        .zip(notes)
        .enumerate()
        .map(|(k, ((&n, &state), note))| CopyFound {
            index: k as u8,
            node: peers.addr(n),
            state,
            note,
        })
        .collect();
    Finding {
        vdi: volumes[item.vdi].label.clone(),
        oid: item.oid,
        strips: item.code.is_some(),
        copies,
        repairable: verdict.source.is_some(),
        repaired: false,
    }
}

/// Repair the bad copies of `item` from its good ones, then check it
/// again: whether it is whole now.
fn fix(
    peers: &mut Peers,
    item: &Item,
    verdict: &Verdict,
    strips: &[Option<Vec<u8>>],
) -> Result<bool, CliError> {
    let Some(source) = verdict.source else {
        return Ok(false);
    };
    let mut asks = Vec::new();
    match item.code {
        None => {
            let from = peers.addr(item.targets[source]);
            for k in verdict.to_repair() {
                asks.push((
                    item.targets[k],
                    Ask::Repair {
                        oid: item.oid,
                        from,
                    },
                ));
            }
        }
        Some(code) => {
            let have: Vec<(u8, &[u8])> = verdict
                .copies
                .iter()
                .enumerate()
                .filter(|(_, c)| **c == Copy::Good)
                .filter_map(|(k, _)| strips[k].as_deref().map(|s| (k as u8, s)))
                .take(code.data() as usize)
                .collect();
            for k in verdict.to_repair() {
                let mut data = vec![0u8; item.read_len as usize];
                code.rebuild(&have, k as u8, &mut data).map_err(|e| {
                    CliError::msg(format!("cannot rebuild strip {k} of {}: {e}", item.oid))
                })?;
                asks.push((
                    item.targets[k],
                    Ask::Create {
                        oid: item.oid,
                        ec_index: k as u8,
                        data,
                    },
                ));
            }
        }
    }
    let answers = peers.run(&asks)?;
    if answers.iter().any(|a| *a != Answer::Done) {
        return Ok(false);
    }
    let again = judge(peers, std::slice::from_ref(item))?;
    Ok(again.first().is_some_and(|(v, _, _)| v.is_clean()))
}
