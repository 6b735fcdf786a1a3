//! Server-side reference counting of data objects (PROTOCOL.md §8,
//! "Reference counting"), done the way sheep 1.0 does it: generational
//! reference counts.
//!
//! * Each inode entry has a `gref` = {generation, count} in the inode.
//! * Snapshot, clone and rebase add one to `count` of every used entry of
//!   the base; the child's entries get `generation` = base's + 1.
//! * An index-range WRITE_OBJ inside `data_vdi_id` zeroes the `gref`s it
//!   covers and, for every entry whose old value was non-zero and changed,
//!   "drops" the old reference `(generation, count)` of data object
//!   `old_vid << 32 | idx`.
//! * Dropping updates the object's ledger, an array of counts per
//!   generation that starts as `[1]`: `ledger[gen] -= 1`,
//!   `ledger[gen + 1] += count`. When every count is zero the ledger and
//!   the data object are removed.
//!
//! Ledgers are kept in memory and mirrored into the store as LEDGER-bit
//! objects (holding `(generation, count)` pairs, not sheep's flat array) so
//! that a directory store can be reopened.

use std::collections::{BTreeMap, HashMap};

use sheepdog_core::oid::{Oid, LEDGER_BIT};
use sheepdog_core::wire::ResultCode;

use super::cluster::Cluster;
use super::inode_io::{
    eio, encode_grefs, read_entries, read_grefs, u32s, Gref, Res, GREF_LEN, GREF_OFF, INDEX_OFF,
    NR_ENTRIES,
};
use super::store::Store;

/// Per data object: generation → count (wrapping u32; zeros left out).
pub type Ledger = BTreeMap<u32, u32>;

/// All ledgers that differ from the initial `[1]`.
#[derive(Clone, Debug, Default)]
pub struct Ledgers {
    map: HashMap<Oid, Ledger>,
}

/// The ledger object of a data object.
pub fn ledger_oid(data: Oid) -> Oid {
    Oid(data.0 | LEDGER_BIT)
}

impl Ledgers {
    /// The ledger of `data`, if it was ever touched.
    pub fn get(&self, data: Oid) -> Option<&Ledger> {
        self.map.get(&data)
    }

    /// Drop the reference `(generation, count)` to `data`. Returns the
    /// ledger left, or `None` when it reached zero (reclaim the object).
    pub fn drop_ref(&mut self, data: Oid, gref: Gref) -> Option<Ledger> {
        let mut ledger = self
            .map
            .remove(&data)
            .unwrap_or_else(|| BTreeMap::from([(0, 1)]));
        let slot = ledger.entry(gref.generation).or_insert(0);
        *slot = slot.wrapping_sub(1);
        let next = ledger.entry(gref.generation.wrapping_add(1)).or_insert(0);
        *next = next.wrapping_add(gref.count);
        ledger.retain(|_, c| *c != 0);
        if ledger.is_empty() {
            None
        } else {
            self.map.insert(data, ledger.clone());
            Some(ledger)
        }
    }

    /// Load from the ledger objects of a store.
    pub fn load(store: &dyn Store) -> std::io::Result<Ledgers> {
        let mut map = HashMap::new();
        for oid in store.list()? {
            // LEDGER_BIT | data oid: no other bit above the VID.
            if oid.0 >> 56 != LEDGER_BIT >> 56 {
                continue;
            }
            let mut len = [0u8; 4];
            if !store.read(oid, 0, &mut len)? {
                continue;
            }
            let n = u32::from_le_bytes(len).min(1 << 20) as usize;
            let mut buf = vec![0u8; 8 * n];
            store.read(oid, 4, &mut buf)?;
            let words = u32s(&buf);
            let ledger: Ledger = words.chunks_exact(2).map(|w| (w[0], w[1])).collect();
            map.insert(Oid(oid.0 & !LEDGER_BIT), ledger);
        }
        Ok(Ledgers { map })
    }
}

fn encode_ledger(ledger: &Ledger) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 8 * ledger.len());
    out.extend_from_slice(&(ledger.len() as u32).to_le_bytes());
    for (g, c) in ledger {
        out.extend_from_slice(&g.to_le_bytes());
        out.extend_from_slice(&c.to_le_bytes());
    }
    out
}

/// Whether a WRITE_OBJ range lies inside `data_vdi_id`
/// (`is_data_vid_update()`).
pub fn is_index_update(oid: Oid, offset: u32, len: u32) -> bool {
    oid.0 & sheepdog_core::oid::VDI_BIT != 0
        && u64::from(offset) >= INDEX_OFF
        && u64::from(offset) + u64::from(len) <= GREF_OFF
}

impl Cluster {
    /// Drop one reference to `data`, now or after `reclaim_delay` more
    /// requests.
    pub(super) fn drop_ref(&mut self, data: Oid, gref: Gref) -> Res<()> {
        if self.config.reclaim_delay > 0 {
            self.reclaims
                .push_back((self.config.reclaim_delay, data, gref));
            return Ok(());
        }
        self.drop_ref_now(data, gref)
    }

    /// Count one more request against the delayed reclaims, and apply those
    /// whose time has come.
    pub(super) fn run_due_reclaims(&mut self) {
        for r in self.reclaims.iter_mut() {
            r.0 = r.0.saturating_sub(1);
        }
        while self.reclaims.front().is_some_and(|r| r.0 == 0) {
            if let Some((_, data, gref)) = self.reclaims.pop_front() {
                // A failing store only leaks the object, as in sheep.
                let _ = self.drop_ref_now(data, gref);
            }
        }
    }

    /// Drop one reference to `data`; reclaim it when its ledger empties.
    fn drop_ref_now(&mut self, data: Oid, gref: Gref) -> Res<()> {
        let lo = ledger_oid(data);
        match self.ledgers.drop_ref(data, gref) {
            Some(ledger) => self
                .store
                .create(lo, 0, &encode_ledger(&ledger))
                .map_err(eio)?,
            None => {
                self.store.remove(lo).map_err(eio)?;
                self.store.remove(data).map_err(eio)?;
            }
        }
        Ok(())
    }

    /// WRITE_OBJ of `payload` at `offset` of an inode, inside its index:
    /// write, zero the covered grefs, drop the replaced references
    /// (`gateway_write_obj()` with `is_data_vid_update()`).
    pub(super) fn index_write(&mut self, oid: Oid, offset: u32, payload: &[u8]) -> Res<()> {
        // Entries as sheep computes them, even for unaligned ranges.
        let start = (offset - INDEX_OFF as u32) / 4;
        let nr = (payload.len() / 4) as u32;
        let nr_in = nr.min(NR_ENTRIES.saturating_sub(start));
        let old = read_entries(&*self.store, oid, start, nr_in)?.ok_or(ResultCode::NoObj)?;
        let refs = read_grefs(&*self.store, oid, start, nr_in)?.ok_or(ResultCode::NoObj)?;
        if !self
            .store
            .write(oid, u64::from(offset), payload)
            .map_err(eio)?
        {
            return Err(ResultCode::NoObj);
        }
        let zeros = vec![0u8; GREF_LEN as usize * nr_in as usize];
        self.store
            .write(oid, GREF_OFF + GREF_LEN * u64::from(start), &zeros)
            .map_err(eio)?;
        let new = u32s(&payload[..4 * nr_in as usize]);
        for i in 0..nr_in as usize {
            if old[i] == 0 || old[i] == new[i] {
                continue;
            }
            let data = super::inode_io::data_oid(old[i], start + i as u32);
            self.drop_ref(data, refs[i])?;
        }
        Ok(())
    }

    /// Add one to `count` of every used entry of `base` (a snapshot, clone
    /// or rebase onto it) and return the entries with their grefs after the
    /// change.
    pub(super) fn bump_grefs(&mut self, base: Oid, used: &[(u32, u32)]) -> Res<Vec<Gref>> {
        let Some((first, last)) = super::inode_io::span(used) else {
            return Ok(Vec::new());
        };
        let n = last - first + 1;
        let mut grefs = read_grefs(&*self.store, base, first, n)?.ok_or(ResultCode::NoObj)?;
        for &(idx, _) in used {
            let g = &mut grefs[(idx - first) as usize];
            g.count = g.count.wrapping_add(1);
        }
        let off = GREF_OFF + GREF_LEN * u64::from(first);
        if !self
            .store
            .write(base, off, &encode_grefs(&grefs))
            .map_err(eio)?
        {
            return Err(ResultCode::NoObj);
        }
        Ok(used
            .iter()
            .map(|&(idx, _)| grefs[(idx - first) as usize])
            .collect())
    }
}
