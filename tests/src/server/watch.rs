//! [`Watched`]: the cluster's store behind a thin wrapper that notes what
//! gateway work does to the objects some node holds a copy of its own of
//! (see `replicas`), so that those copies follow the way sheep's would.
//!
//! Every path that changes an object (CREATE_AND_WRITE_OBJ, WRITE_OBJ,
//! index writes, reclaims, DEL_VDI, DISCARD_OBJ, ledgers, attributes)
//! goes through the [`Store`]; watching there rather than in each of them
//! leaves none out. Only objects on the watch list are noted, and an empty
//! list costs one atomic load per store call.

use std::collections::HashSet;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use sheepdog_core::oid::Oid;

use super::store::Store;

/// What happened to a watched object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Change {
    /// Created, or replaced wholesale.
    Create(Oid),
    /// `data` written at `offset` into the existing object.
    Write {
        /// The object.
        oid: Oid,
        /// Where.
        offset: u64,
        /// What.
        data: Vec<u8>,
    },
    /// Removed.
    Remove(Oid),
}

impl Change {
    /// The object it happened to.
    pub(super) fn oid(&self) -> Oid {
        match *self {
            Change::Create(oid) | Change::Remove(oid) | Change::Write { oid, .. } => oid,
        }
    }
}

/// The watch list and what was noted since the last [`Watch::drain`].
#[derive(Debug, Default)]
struct State {
    oids: HashSet<Oid>,
    changes: Vec<Change>,
}

/// Shared between the [`Watched`] store and the cluster that reads it.
#[derive(Debug, Default)]
pub(super) struct Watch {
    /// Whether any object is watched: the store's fast path.
    active: AtomicBool,
    /// Nothing is noted: the cluster is changing the store for the copies'
    /// own sake.
    paused: AtomicBool,
    state: Mutex<State>,
}

impl Watch {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Watch `oid` (`true`) or stop watching it.
    pub(super) fn set(&self, oid: Oid, on: bool) {
        let mut s = self.state();
        if on {
            s.oids.insert(oid);
        } else {
            s.oids.remove(&oid);
        }
        self.active.store(!s.oids.is_empty(), Ordering::SeqCst);
    }

    /// Stop noting changes (`true`) or note them again.
    pub(super) fn pause(&self, on: bool) {
        self.paused.store(on, Ordering::SeqCst);
    }

    /// What was noted since the last call.
    pub(super) fn drain(&self) -> Vec<Change> {
        if !self.active.load(Ordering::SeqCst) {
            return Vec::new();
        }
        std::mem::take(&mut self.state().changes)
    }

    /// Note `change` if its object is watched.
    fn note(&self, oid: Oid, change: impl FnOnce() -> Change) {
        if !self.active.load(Ordering::SeqCst) || self.paused.load(Ordering::SeqCst) {
            return;
        }
        let mut s = self.state();
        if s.oids.contains(&oid) {
            let c = change();
            s.changes.push(c);
        }
    }
}

/// A [`Store`] that notes changes to watched objects in a [`Watch`] and
/// otherwise passes every call through.
pub(super) struct Watched {
    inner: Box<dyn Store>,
    watch: Arc<Watch>,
}

impl Watched {
    /// `inner`, watched through `watch`.
    pub(super) fn new(inner: Box<dyn Store>, watch: Arc<Watch>) -> Watched {
        Watched { inner, watch }
    }
}

impl Store for Watched {
    fn read(&self, oid: Oid, offset: u64, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.read(oid, offset, buf)
    }

    fn write(&mut self, oid: Oid, offset: u64, data: &[u8]) -> io::Result<bool> {
        let done = self.inner.write(oid, offset, data)?;
        if done {
            self.watch.note(oid, || Change::Write {
                oid,
                offset,
                data: data.to_vec(),
            });
        }
        Ok(done)
    }

    fn create(&mut self, oid: Oid, offset: u64, data: &[u8]) -> io::Result<()> {
        self.inner.create(oid, offset, data)?;
        self.watch.note(oid, || Change::Create(oid));
        Ok(())
    }

    fn remove(&mut self, oid: Oid) -> io::Result<bool> {
        let done = self.inner.remove(oid)?;
        if done {
            self.watch.note(oid, || Change::Remove(oid));
        }
        Ok(done)
    }

    fn exists(&self, oid: Oid) -> io::Result<bool> {
        self.inner.exists(oid)
    }

    fn list(&self) -> io::Result<Vec<Oid>> {
        self.inner.list()
    }

    fn used_bytes(&self) -> u64 {
        self.inner.used_bytes()
    }

    fn load_meta(&self) -> io::Result<Option<Vec<u8>>> {
        self.inner.load_meta()
    }

    fn save_meta(&mut self, meta: &[u8]) -> io::Result<()> {
        self.inner.save_meta(meta)
    }
}
