//! Per-node copies: what each node holds of each object, as the peer
//! requests (`dog vdi check`, recovery) and GET_OBJ_LIST see it.
//!
//! The canonical store keeps one copy of every object: what a gateway
//! reads and writes. A node's own copy of an object is what placement gives
//! it (core's [`Ring`] over the live nodes, `copies` = min(the VID's
//! copies, zones), as sheep's `oid_to_vnodes`), unless something made it
//! otherwise:
//!
//! * a replicated object (inodes, B-tree nodes and ledgers always; data,
//!   vmstate and attribute objects of replicated VDIs) is the canonical
//!   object, whole (`get_objsize`, zeros where never written), on each of
//!   its targets;
//! * an object of an erasure-coded VDI (data and vmstate objects, sheep's
//!   `is_erasure_oid`) is strip `k` on the target of copy `k`, computed
//!   from the canonical object by core's [`Code`]: `object size / d`
//!   bytes (`get_store_objsize`).
//!
//! What differs from that is kept per (object, node, strip) as an
//! [`Override`]: the copy is [`Missing`](Override::Missing), or it is
//! [`Stored`](Override::Stored) bytes (a corrupt copy, one a peer request
//! wrote, or a copy where placement puts none: an orphan). For a
//! replicated object the strip index is always 0, as sheep's store ignores
//! `ec_index` for such objects. Overrides that say what placement says
//! anyway are dropped (`Cluster::settle`), so an empty map means every
//! node holds exactly its placed copies.
//!
//! The canonical store follows the copies: when no target holds a copy of
//! an object any more, it is removed from the store (a gateway read then
//! answers NO_OBJ, as sheep's would); when a target gets a copy of a
//! replicated object the store lacks (or every data strip of an
//! erasure-coded one), the store gets the object back.
//!
//! And the copies follow the gateway: work that creates or removes an
//! object (through any path: requests, reclaims, DEL_VDI) replaces or
//! removes every target's copy, as sheep's gateway forwards it to every
//! target; a write is applied to the targets' stored copies of a
//! replicated object. The [`Watched`](super::watch::Watched) store notes
//! that work for the objects that have overrides.
//!
//! Simplified against sheep: a membership change is a recovery finished
//! at once (placed copies move with the placement; overrides stay on their
//! node); a gateway write into an object one of whose targets has no copy
//! succeeds (sheep's fails with that node's NO_OBJ); a gateway write into
//! an erasure-coded object leaves stored strips as they are; attribute
//! objects of erasure-coded VDIs are replicated here (sheep strips them
//! too, with strips a quarter of a data object's size).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use sheepdog_core::erasure::Code;
use sheepdog_core::nodes::Node;
use sheepdog_core::oid::{Oid, OidKind};
use sheepdog_core::placement::{ring_len, Ring, Vnode};
use sheepdog_core::wire::ResultCode;

use super::cluster::Cluster;
use super::inode_io::{eio, read_bytes, Res};
use super::watch::{Change, Watch};

/// What a node holds of an object in place of what placement gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Override {
    /// No copy, though placement puts one there.
    Missing,
    /// These bytes: a copy that differs from the placed one, or a copy
    /// where placement puts none.
    Stored(Vec<u8>),
}

/// Every node's overrides, by (object, node, strip).
#[derive(Debug)]
pub(super) struct Replicas {
    map: BTreeMap<(Oid, usize, u8), Override>,
    /// The store's watch list: the objects with overrides.
    watch: Arc<Watch>,
}

impl Replicas {
    /// No overrides, watching through `watch`.
    pub(super) fn new(watch: Arc<Watch>) -> Replicas {
        Replicas {
            map: BTreeMap::new(),
            watch,
        }
    }

    /// The watch list of the cluster's store.
    pub(super) fn watch(&self) -> &Arc<Watch> {
        &self.watch
    }

    /// Node `node`'s override of strip `ec` of `oid`.
    pub(super) fn get(&self, node: usize, oid: Oid, ec: u8) -> Option<&Override> {
        self.map.get(&(oid, node, ec))
    }

    /// Set node `node`'s override of strip `ec` of `oid`.
    pub(super) fn set(&mut self, node: usize, oid: Oid, ec: u8, o: Override) {
        self.map.insert((oid, node, ec), o);
        self.watch.set(oid, true);
    }

    /// Drop node `node`'s override of strip `ec` of `oid`.
    pub(super) fn clear(&mut self, node: usize, oid: Oid, ec: u8) -> Option<Override> {
        let old = self.map.remove(&(oid, node, ec));
        if old.is_some() && self.keys_of(oid).is_empty() {
            self.watch.set(oid, false);
        }
        old
    }

    /// Drop every override of `oid`.
    pub(super) fn clear_object(&mut self, oid: Oid) {
        for (node, ec) in self.keys_of(oid) {
            self.map.remove(&(oid, node, ec));
        }
        self.watch.set(oid, false);
    }

    /// The (node, strip) pairs with an override of `oid`.
    pub(super) fn keys_of(&self, oid: Oid) -> Vec<(usize, u8)> {
        self.map
            .range((oid, 0, 0)..=(oid, usize::MAX, u8::MAX))
            .map(|(&(_, node, ec), _)| (node, ec))
            .collect()
    }

    /// The objects of which node `node` has stored bytes.
    pub(super) fn stored_on(&self, node: usize) -> impl Iterator<Item = (Oid, u8)> + '_ {
        self.map.iter().filter_map(move |(&(oid, n, ec), o)| {
            (n == node && matches!(o, Override::Stored(_))).then_some((oid, ec))
        })
    }

    /// Stored bytes of node `node`'s strip `ec` of `oid`, to change.
    fn stored_mut(&mut self, node: usize, oid: Oid, ec: u8) -> Option<&mut Vec<u8>> {
        match self.map.get_mut(&(oid, node, ec)) {
            Some(Override::Stored(b)) => Some(b),
            _ => None,
        }
    }
}

/// Where an object's copies go and how long each is.
#[derive(Clone, Debug)]
pub(super) struct Layout {
    /// The object.
    pub(super) oid: Oid,
    /// Configured node indexes of its copies, copy 0 first.
    pub(super) targets: Vec<usize>,
    /// The erasure code of an erasure-coded object: copy `k` is strip `k`.
    pub(super) code: Option<Code>,
    /// Bytes of the whole object (`get_objsize`).
    pub(super) object_len: usize,
    /// Bytes of one node's copy (`get_store_objsize`).
    pub(super) copy_len: usize,
}

impl Layout {
    /// The strip index a request's `ec_index` names: itself for an
    /// erasure-coded object, 0 for a replicated one (sheep's store keys
    /// those by oid alone).
    pub(super) fn index(&self, ec: u8) -> u8 {
        if self.code.is_some() {
            ec
        } else {
            0
        }
    }

    /// The strip placement puts on node `node`, if it is a target.
    pub(super) fn slot_of(&self, node: usize) -> Option<u8> {
        let k = self.targets.iter().position(|&t| t == node)?;
        Some(if self.code.is_some() { k as u8 } else { 0 })
    }

    /// Every (node, strip) placement puts a copy on.
    pub(super) fn slots(&self) -> impl Iterator<Item = (usize, u8)> + '_ {
        self.targets
            .iter()
            .enumerate()
            .map(|(k, &n)| (n, if self.code.is_some() { k as u8 } else { 0 }))
    }

    /// Strip `ec` of the whole object `object`, as placement puts it.
    fn strip_of<'a>(&self, object: &'a [u8], ec: u8) -> Res<Cow<'a, [u8]>> {
        match self.code {
            None => Ok(Cow::Borrowed(object)),
            Some(code) => {
                let mut out = vec![0u8; self.copy_len];
                code.strip(object, ec, &mut out)
                    .map_err(|_| ResultCode::Eio)?;
                Ok(Cow::Owned(out))
            }
        }
    }
}

/// Whether `stored` holds what `placed` does: equal over the copy's
/// length, and zeros past it (a file that grew past the object's end).
fn same_copy(stored: &[u8], placed: &[u8]) -> bool {
    stored.len() >= placed.len()
        && stored[..placed.len()] == *placed
        && stored[placed.len()..].iter().all(|&b| b == 0)
}

/// `len` bytes of `bytes` at `offset`, zeros past its end.
pub(super) fn slice_padded(bytes: &[u8], offset: usize, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    if offset < bytes.len() {
        let n = (bytes.len() - offset).min(len);
        out[..n].copy_from_slice(&bytes[offset..offset + n]);
    }
    out
}

impl Cluster {
    /// The erasure code of `oid`, if it is an erasure-coded object
    /// (`is_erasure_oid`: a data or vmstate object of a VID whose copy
    /// policy is not 0; an unknown VID takes the cluster's default, as
    /// sheep does).
    pub(super) fn erasure_code(&self, oid: Oid) -> Option<Code> {
        if !matches!(oid.kind(), OidKind::Data | OidKind::Vmstate) {
            return None;
        }
        let policy = self
            .vdis
            .get(&oid.vid_bits())
            .map_or(self.config.copy_policy, |s| s.copy_policy);
        if policy == 0 {
            return None;
        }
        Code::from_policy(policy).ok()
    }

    /// The layouts of `oids` over one ring of the live nodes.
    pub(super) fn layouts(&self, oids: &[Oid]) -> Vec<Layout> {
        let (index, nodes): (Vec<usize>, Vec<Node>) = (self.config.nodes.iter().enumerate())
            .filter(|(i, _)| !self.down.contains(i))
            .map(|(i, n)| {
                let node = Node {
                    addr: n.addr,
                    zone: n.zone,
                    nr_vnodes: n.nr_vnodes,
                };
                (i, node)
            })
            .unzip();
        let mut buf = vec![Vnode::default(); ring_len(&nodes)];
        // No vnodes at all (gateways only): nothing is placed anywhere.
        let ring = Ring::new(&nodes, &mut buf).ok();
        (oids.iter())
            .map(|&oid| {
                let code = self.erasure_code(oid);
                let copies = usize::from(self.copies_of(oid.vid_bits()));
                let targets = ring.as_ref().map_or_else(Vec::new, |r| {
                    (r.targets(oid, copies).as_slice().iter())
                        .filter_map(|&i| index.get(usize::from(i)).copied())
                        .collect()
                });
                let object_len = self.object_size(oid) as usize;
                let copy_len = code.map_or(object_len, |c| c.strip_len(object_len));
                Layout {
                    oid,
                    targets,
                    code,
                    object_len,
                    copy_len,
                }
            })
            .collect()
    }

    /// The layout of one object.
    pub(super) fn layout(&self, oid: Oid) -> Layout {
        let mut all = self.layouts(&[oid]);
        all.pop().unwrap_or(Layout {
            oid,
            targets: Vec::new(),
            code: None,
            object_len: 0,
            copy_len: 0,
        })
    }

    /// The whole canonical object, zeros where never written; NO_MEM for
    /// one larger than `max_data_length` (sheep's buffer allocation
    /// failing, rather than this process's).
    fn canonical(&self, lay: &Layout) -> Res<Option<Vec<u8>>> {
        if lay.object_len > self.config.max_data_length as usize {
            return Err(ResultCode::NoMem);
        }
        read_bytes(&*self.store, lay.oid, 0, lay.object_len)
    }

    /// Node `node`'s copy (strip `ec`) as placement makes it from the
    /// canonical `object`.
    fn placed<'a>(
        &self,
        lay: &Layout,
        object: Option<&'a [u8]>,
        node: usize,
        ec: u8,
    ) -> Res<Option<Cow<'a, [u8]>>> {
        let ec = lay.index(ec);
        match object {
            Some(object) if lay.slot_of(node) == Some(ec) => lay.strip_of(object, ec).map(Some),
            _ => Ok(None),
        }
    }

    /// Node `node`'s whole copy (strip `ec`) of the object, if it has one.
    pub(super) fn node_copy(&self, lay: &Layout, node: usize, ec: u8) -> Res<Option<Vec<u8>>> {
        let ec = lay.index(ec);
        match self.replicas.get(node, lay.oid, ec) {
            Some(Override::Missing) => Ok(None),
            Some(Override::Stored(b)) => Ok(Some(b.clone())),
            None if lay.slot_of(node) != Some(ec) => Ok(None),
            None => {
                let object = self.canonical(lay)?;
                Ok(self
                    .placed(lay, object.as_deref(), node, ec)?
                    .map(Cow::into_owned))
            }
        }
    }

    /// `len` bytes at `offset` of node `node`'s copy (strip `ec`), zeros
    /// past its end; `None` if it has none.
    pub(super) fn node_copy_range(
        &self,
        lay: &Layout,
        node: usize,
        ec: u8,
        offset: u64,
        len: usize,
    ) -> Res<Option<Vec<u8>>> {
        let ec = lay.index(ec);
        match self.replicas.get(node, lay.oid, ec) {
            Some(Override::Missing) => Ok(None),
            Some(Override::Stored(b)) => {
                let at = usize::try_from(offset).unwrap_or(usize::MAX);
                Ok(Some(slice_padded(b, at, len)))
            }
            None if lay.slot_of(node) != Some(ec) => Ok(None),
            // A replica is the canonical object: read just the range.
            None if lay.code.is_none() => read_bytes(&*self.store, lay.oid, offset, len),
            None => {
                let copy = self.node_copy(lay, node, ec)?;
                let at = usize::try_from(offset).unwrap_or(usize::MAX);
                Ok(copy.map(|c| slice_padded(&c, at, len)))
            }
        }
    }

    /// Whether node `node` holds a copy (strip `ec`) of the object.
    pub(super) fn node_holds(&self, lay: &Layout, node: usize, ec: u8) -> Res<bool> {
        let ec = lay.index(ec);
        match self.replicas.get(node, lay.oid, ec) {
            Some(o) => Ok(matches!(o, Override::Stored(_))),
            None if lay.slot_of(node) != Some(ec) => Ok(false),
            None => self.store.exists(lay.oid).map_err(eio),
        }
    }

    /// Node `node`'s copy (strip `ec`) becomes `bytes` (at least the
    /// copy's length: shorter ones are padded with zeros, as a
    /// preallocated file reads).
    pub(super) fn put_copy(&mut self, lay: &Layout, node: usize, ec: u8, mut bytes: Vec<u8>) {
        if bytes.len() < lay.copy_len {
            bytes.resize(lay.copy_len, 0);
        }
        let ec = lay.index(ec);
        self.replicas
            .set(node, lay.oid, ec, Override::Stored(bytes));
        self.settle(lay.oid);
    }

    /// Node `node` no longer holds a copy (strip `ec`); false if it held
    /// none.
    pub(super) fn drop_copy(&mut self, lay: &Layout, node: usize, ec: u8) -> Res<bool> {
        if !self.node_holds(lay, node, ec)? {
            return Ok(false);
        }
        let ec = lay.index(ec);
        if lay.slot_of(node) == Some(ec) {
            self.replicas.set(node, lay.oid, ec, Override::Missing);
        } else {
            self.replicas.clear(node, lay.oid, ec);
        }
        self.settle(lay.oid);
        Ok(true)
    }

    /// Bring `oid`'s overrides and the canonical store back in line (see
    /// the module docs): give the store back an object whose copies
    /// exist only as overrides, drop overrides that say what placement
    /// says, and remove from the store an object no target holds. Store
    /// failures leave things as they are.
    pub(super) fn settle(&mut self, oid: Oid) {
        if self.replicas.keys_of(oid).is_empty() {
            return;
        }
        let lay = self.layout(oid);
        let Ok(mut object) = self.canonical(&lay) else {
            return;
        };
        if object.is_none() {
            object = self.restore_canonical(&lay);
        }
        for (node, ec) in self.replicas.keys_of(oid) {
            let Ok(placed) = self.placed(&lay, object.as_deref(), node, ec) else {
                continue;
            };
            let redundant = match (self.replicas.get(node, oid, ec), placed) {
                (Some(Override::Missing), None) => true,
                (Some(Override::Stored(b)), Some(p)) => same_copy(b, &p),
                _ => false,
            };
            if redundant {
                self.replicas.clear(node, oid, ec);
            }
        }
        let all_missing = !lay.targets.is_empty()
            && lay
                .slots()
                .all(|(n, ec)| self.replicas.get(n, oid, ec) == Some(&Override::Missing));
        if object.is_some() && all_missing && self.quietly(|s| s.store.remove(oid)).is_ok() {
            let slots: Vec<_> = lay.slots().collect();
            for (n, ec) in slots {
                self.replicas.clear(n, oid, ec);
            }
        }
    }

    /// The canonical object made again from the targets' stored copies (a
    /// replica's first, or an erasure-coded object's data strips), saved
    /// to the store; every target without a copy is then marked missing.
    fn restore_canonical(&mut self, lay: &Layout) -> Option<Vec<u8>> {
        let oid = lay.oid;
        let stored = |n: usize, ec: u8| match self.replicas.get(n, oid, ec) {
            Some(Override::Stored(b)) => Some(b.as_slice()),
            _ => None,
        };
        let object = match lay.code {
            None => {
                let first = lay.targets.iter().find_map(|&n| stored(n, 0))?;
                let mut object = first.to_vec();
                object.resize(object.len().max(lay.object_len), 0);
                object
            }
            Some(code) => {
                let d = usize::from(code.data());
                let data: Option<Vec<&[u8]>> = (lay.targets.iter().take(d).enumerate())
                    .map(|(k, &n)| stored(n, k as u8).and_then(|b| b.get(..lay.copy_len)))
                    .collect();
                let data = data.filter(|s| s.len() == d)?;
                let mut object = vec![0u8; lay.object_len];
                code.join(&data, &mut object).ok()?;
                object
            }
        };
        self.quietly(|s| s.store.create(oid, 0, &object)).ok()?;
        let slots: Vec<_> = lay.slots().collect();
        for (n, ec) in slots {
            if self.replicas.get(n, oid, ec).is_none() {
                self.replicas.set(n, oid, ec, Override::Missing);
            }
        }
        Some(object)
    }

    /// Run `f` on the store without the watch noting it: the copies'
    /// own bookkeeping, not gateway work.
    fn quietly<R>(&mut self, f: impl FnOnce(&mut Cluster) -> R) -> R {
        let watch = Arc::clone(self.replicas.watch());
        watch.pause(true);
        let r = f(self);
        watch.pause(false);
        r
    }

    /// Make the copies follow the gateway work noted since the last call
    /// (see the module docs).
    pub(super) fn follow_gateway(&mut self) {
        let changes = self.replicas.watch().drain();
        if changes.is_empty() {
            return;
        }
        let mut touched = BTreeSet::new();
        for change in changes {
            let oid = change.oid();
            let lay = self.layout(oid);
            match change {
                Change::Create(_) | Change::Remove(_) => {
                    let slots: Vec<_> = lay.slots().collect();
                    for (n, ec) in slots {
                        self.replicas.clear(n, oid, ec);
                    }
                }
                Change::Write { offset, data, .. } if lay.code.is_none() => {
                    let at = usize::try_from(offset).unwrap_or(usize::MAX);
                    for &n in &lay.targets {
                        if let Some(b) = self.replicas.stored_mut(n, oid, 0) {
                            // Bytes past the object's end (and the copy's)
                            // are not kept: nothing reads or hashes them.
                            let end = at.saturating_add(data.len()).min(lay.copy_len.max(b.len()));
                            if at < end {
                                if b.len() < end {
                                    b.resize(end, 0);
                                }
                                b[at..end].copy_from_slice(&data[..end - at]);
                            }
                        }
                    }
                }
                Change::Write { .. } => {}
            }
            touched.insert(oid);
        }
        for oid in touched {
            self.settle(oid);
        }
    }

    /// The objects node `node` holds, ascending, each once: the canonical
    /// objects placement puts on it and it has not lost, and its stored
    /// copies.
    pub(super) fn node_objects(&self, node: usize) -> Res<Vec<Oid>> {
        let oids = self.store.list().map_err(eio)?;
        let mut held: BTreeSet<Oid> = BTreeSet::new();
        for lay in self.layouts(&oids) {
            if let Some(ec) = lay.slot_of(node) {
                if self.replicas.get(node, lay.oid, ec) != Some(&Override::Missing) {
                    held.insert(lay.oid);
                }
            }
        }
        held.extend(self.replicas.stored_on(node).map(|(oid, _)| oid));
        Ok(held.into_iter().collect())
    }
}
