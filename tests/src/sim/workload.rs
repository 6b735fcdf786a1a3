//! Random operation sequences through the engine against the pure server,
//! checked against [`DiskModel`]s: writes, reads and discards of random
//! ranges (several in flight), snapshots, snapshots taken behind the
//! engine's back, clones, rollbacks, resizes, deletes, reopening, and
//! dropped connections.

use std::collections::HashMap;

use sheepdog_core::address::Snapshot;
use sheepdog_core::engine::{ControlDone, CreateOptions, Error, Event, Token, VolumeInfo};
use sheepdog_core::redundancy::Redundancy;

use super::model::{DiskModel, SnapModel};
use super::rng::Rng;
use super::wire::{FaultRates, SimEngine, Wire, QUEUE};
use crate::server::{Cluster, ClusterConfig, Restore};

/// Object size of simulated disks (1 MiB, the smallest), so that small
/// disks have many objects.
pub const SHIFT: u8 = 20;
const MIB: u64 = 1 << 20;
/// Largest simulated disk.
pub const MAX_DISK: u64 = 24 * MIB;
/// Longest a snapshot behind the engine's back stays half done, in
/// nanoseconds of the simulated clock.
const SNAPSHOT_WINDOW: u64 = 20_000_000;

/// What the workload does and how often things go wrong.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Seed of everything.
    pub seed: u64,
    /// Fault rates on the wire.
    pub faults: FaultRates,
    /// Snapshots by another client while writes are in flight, per mille of
    /// operations.
    pub external_snapshots: u32,
    /// Of those, per mille taken in sheep's two steps with the engine's
    /// requests in between (the base read-only and its inode read, then
    /// written back from that copy and the new VDI created). Index entries
    /// the engine adds in between are lost from both inodes; changed and
    /// cleared ones are left alone, since restoring those leaves sheep's
    /// reference counts wrong for older snapshots, which no client can
    /// help (`Restore::AddedOnly`; the scenario tests restore everything).
    pub snapshot_windows: u32,
    /// Dropped connections, per mille of operations.
    pub disconnects: u32,
    /// Largest write or read.
    pub max_io: u64,
    /// Released objects are reclaimed this many requests late, as a real
    /// cluster does it asynchronously (0: at once).
    pub reclaim_delay: u32,
}

impl Config {
    /// Everything on, at rates that keep retries well within their bounds.
    pub fn stormy(seed: u64) -> Config {
        Config {
            seed,
            faults: FaultRates {
                transient: 30,
                applied_then_transient: 20,
                reorder: true,
            },
            external_snapshots: 8,
            snapshot_windows: 500,
            disconnects: 5,
            max_io: 3 * MIB,
            reclaim_delay: 4,
        }
    }
}

/// Counters of a run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// Operations submitted (reads, writes, discards, control operations).
    pub ops: u64,
    /// Reads checked against the model.
    pub reads_checked: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Snapshots taken by the engine.
    pub snapshots: u64,
    /// Snapshots taken behind the engine's back.
    pub external_snapshots: u64,
    /// Of those, taken in two steps with engine requests in between.
    pub snapshot_windows: u64,
    /// Clones.
    pub clones: u64,
    /// Rollbacks.
    pub rollbacks: u64,
    /// Deletes.
    pub deletes: u64,
    /// Resizes.
    pub resizes: u64,
}

enum Pending {
    Write,
    Read { expected: Vec<u8> },
}

#[derive(Clone, Copy, Debug)]
struct Open {
    disk: usize,
    /// Index into the disk's snapshots, or the working VDI.
    snap: Option<usize>,
}

/// The random workload and its model.
pub struct Workload {
    /// Engine, server and wire.
    pub wire: Wire,
    /// Counters.
    pub stats: Stats,
    cfg: Config,
    rng: Rng,
    disks: Vec<DiskModel>,
    open: Option<Open>,
    pending: HashMap<Token, Pending>,
    next_token: Token,
    seq: u64,
    /// The last operations.
    pub log: Log,
}

fn fail(what: &str, e: impl std::fmt::Debug) -> ! {
    panic!("{what} failed: {e:?}")
}

/// The last operations, shown when a run fails.
#[derive(Default)]
pub struct Log {
    lines: std::collections::VecDeque<String>,
}

impl Log {
    fn push(&mut self, line: String) {
        if self.lines.len() == 4000 {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    /// The last 60 lines, oldest first.
    pub fn dump(&self) -> String {
        let skip = self.lines.len().saturating_sub(60);
        self.lines
            .iter()
            .skip(skip)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Workload {
    /// A workload whose choices come from `script` (a fuzzer's input)
    /// before falling back to the seed.
    pub fn scripted(cfg: Config, script: &[u8]) -> Workload {
        let mut w = Workload::new(cfg);
        w.rng = Rng::scripted(script);
        w
    }

    /// A workload over a fresh cluster with 1 MiB objects.
    pub fn new(cfg: Config) -> Workload {
        let config = ClusterConfig::default()
            .with_block_size_shift(SHIFT)
            .with_reclaim_delay(cfg.reclaim_delay);
        let cluster = Cluster::new(config);
        let mut wire = Wire::new(cluster, cfg.seed, (MAX_DISK / MIB) as usize * 2);
        wire.faults = cfg.faults;
        Workload {
            wire,
            stats: Stats::default(),
            cfg,
            rng: Rng::new(cfg.seed),
            disks: Vec::new(),
            open: None,
            pending: HashMap::new(),
            next_token: 1,
            seq: 0,
            log: Log::default(),
        }
    }

    fn engine(&mut self) -> &mut SimEngine {
        &mut self.wire.engine
    }

    /// Handle one event of a read or write.
    fn on_io_event(
        pending: &mut HashMap<Token, Pending>,
        wire: &mut Wire,
        ev: &Event,
        checked: &mut u64,
    ) {
        match ev {
            Event::Zeros(z) => {
                let buf = wire.bufs.get_mut(&z.token).expect("buffer of a read");
                buf[z.range.start as usize..z.range.end as usize].fill(0);
            }
            Event::Done { token, result } => {
                if let Err(e) = result {
                    fail(&format!("read or write {token}"), e);
                }
                let buf = wire.bufs.remove(token).expect("buffer");
                match pending.remove(token).expect("pending operation") {
                    Pending::Write => {}
                    Pending::Read { expected } => {
                        if buf != expected {
                            let at = buf.iter().zip(&expected).position(|(a, b)| a != b);
                            panic!("read {token} differs from the model at byte {at:?}");
                        }
                        *checked += 1;
                    }
                }
            }
            // The engine promises never to send this buffer again: poison
            // it, so that a broken promise shows up as a wrong read.
            Event::DataDone { token } => {
                if let Some(buf) = wire.bufs.get_mut(token) {
                    buf.fill(0xEE);
                }
            }
            Event::Control(done) => panic!("unexpected control outcome {done:?}"),
        }
    }

    /// Drive until every read and write has completed.
    pub fn drain(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending = &mut self.pending;
        let checked = &mut self.stats.reads_checked;
        self.wire.drive_until(|wire, ev| {
            Self::on_io_event(pending, wire, ev, checked);
            pending.is_empty()
        });
    }

    /// Run one control operation (after draining reads and writes).
    pub fn control(
        &mut self,
        start: impl FnOnce(&mut SimEngine) -> Result<(), Error>,
    ) -> Result<ControlDone, Error> {
        self.drain();
        start(self.engine())?;
        self.stats.ops += 1;
        let vol = self.wire.engine.volume();
        self.log.push(format!("control on {vol:?}"));
        let mut out = None;
        self.wire.drive_until(|_, ev| match ev {
            Event::Control(done) => {
                out = Some(done.clone());
                true
            }
            other => panic!("unexpected event {other:?}"),
        });
        let out = out.expect("control outcome");
        self.log.push(format!("  -> {out:?}"));
        match out {
            ControlDone::Failed(e) => Err(e),
            done => Ok(done),
        }
    }

    fn volume(&self) -> VolumeInfo {
        self.wire.engine.volume().expect("open volume")
    }

    fn close(&mut self) {
        if self.open.take().is_some() {
            self.control(|e| e.close())
                .unwrap_or_else(|e| fail("close", e));
        }
    }

    fn create_disk(&mut self) {
        self.seq += 1;
        let name = format!("disk{}", self.seq);
        let size =
            (1 + self.rng.below(12)) * MIB + self.rng.below(2) * 512 * (1 + self.rng.below(100));
        let opts = CreateOptions {
            size,
            redundancy: Redundancy::ClusterDefault,
            block_size_shift: 0,
            prealloc: self.rng.chance(100),
        };
        let n = name.clone();
        self.control(|e| e.create(&n, opts))
            .unwrap_or_else(|e| fail("create", e));
        self.disks.push(DiskModel::new(name, size));
    }

    fn snap_id(&mut self, vid: u32) -> u32 {
        self.wire
            .cluster
            .inode_header(vid)
            .expect("snapshot inode")
            .snap_id
    }

    fn open_random(&mut self) {
        self.close();
        if self.disks.is_empty() || self.rng.chance(50) {
            self.create_disk();
        }
        let d = self.rng.below(self.disks.len() as u64) as usize;
        let known: Vec<usize> = (0..self.disks[d].snapshots.len())
            .filter(|&i| self.disks[d].snapshots[i].data.is_some())
            .collect();
        let use_snap =
            self.disks[d].working.is_none() || (!known.is_empty() && self.rng.chance(250));
        if use_snap && known.is_empty() {
            return;
        }
        let snap = use_snap.then(|| known[self.rng.below(known.len() as u64) as usize]);
        let name = self.disks[d].name.clone();
        let sel = match snap {
            Some(i) => {
                let vid = self.disks[d].snapshots[i].vid;
                Some(Snapshot::Id(self.snap_id(vid)))
            }
            None => None,
        };
        let lock = self.rng.chance(100);
        match self.control(|e| e.open(&name, sel, lock)) {
            Ok(ControlDone::Opened(info)) => {
                self.log.push(format!("opened {name} {snap:?}: {info:?}"));
                let expect = match snap {
                    Some(i) => self.disks[d].snapshots[i].data.as_ref().map(|v| v.len()),
                    None => self.disks[d].working.as_ref().map(|v| v.len()),
                };
                assert_eq!(Some(info.size as usize), expect, "size of {name}");
                self.open = Some(Open { disk: d, snap });
            }
            other => fail("open", other),
        }
    }

    fn data_of(&mut self, open: Open) -> &mut Vec<u8> {
        let disk = &mut self.disks[open.disk];
        match open.snap {
            Some(i) => disk.snapshots[i].data.as_mut().expect("known snapshot"),
            None => disk.working.as_mut().expect("working VDI"),
        }
    }

    fn random_range(&mut self, size: u64) -> (u64, u64) {
        let max = match self.rng.below(10) {
            0 => self.cfg.max_io,
            1..=2 => MIB,
            _ => 64 << 10,
        }
        .min(size);
        let mut len = 1 + self.rng.below(max);
        let mut off = self.rng.below(size - len + 1);
        if self.rng.chance(300) {
            off &= !511;
            len = (len + 511) & !511;
            len = len.min(size - off);
        }
        (off, len.max(1))
    }

    fn submit_io(&mut self, open: Open) {
        let size = self.data_of(open).len() as u64;
        let token = self.next_token;
        self.next_token += 1;
        let kind = self.rng.below(100);
        let writable = open.snap.is_none();
        if writable && kind < 45 {
            let (off, len) = self.random_range(size);
            let mut data = vec![0u8; len as usize];
            if !self.rng.chance(100) {
                self.rng.fill(&mut data);
            }
            self.log.push(format!("{token}: write {off}+{len}"));
            self.engine()
                .write(token, off, len)
                .unwrap_or_else(|e| fail("write", e));
            self.data_of(open)[off as usize..(off + len) as usize].copy_from_slice(&data);
            self.wire.bufs.insert(token, data);
            self.pending.insert(token, Pending::Write);
            self.stats.bytes_written += len;
        } else if writable && kind < 50 {
            // Discard whole objects.
            let objects = size.div_ceil(MIB);
            let first = self.rng.below(objects);
            let n = 1 + self.rng.below((objects - first).min(3));
            let off = first * MIB;
            let len = (n * MIB).min(size - off);
            self.log.push(format!("{token}: discard {off}+{len}"));
            self.engine()
                .discard(token, off, len)
                .unwrap_or_else(|e| fail("discard", e));
            self.data_of(open)[off as usize..(off + len) as usize].fill(0);
            self.wire.bufs.insert(token, Vec::new());
            self.pending.insert(token, Pending::Write);
        } else {
            let (off, len) = self.random_range(size);
            self.log.push(format!("{token}: read {off}+{len}"));
            self.engine()
                .read(token, off, len)
                .unwrap_or_else(|e| fail("read", e));
            let expected = self.data_of(open)[off as usize..(off + len) as usize].to_vec();
            // Junk, so that a missing fill shows.
            self.wire.bufs.insert(token, vec![0xA5; len as usize]);
            self.pending.insert(token, Pending::Read { expected });
        }
        self.stats.ops += 1;
    }

    /// Let the wire make a little progress, handling events.
    fn progress(&mut self) {
        let rounds = 1 + self.rng.below(4);
        for _ in 0..rounds {
            while let Some(ev) = self.wire.engine.poll_event() {
                Self::on_io_event(
                    &mut self.pending,
                    &mut self.wire,
                    &ev,
                    &mut self.stats.reads_checked,
                );
            }
            if !self.wire.step() {
                break;
            }
        }
    }

    fn external_snapshot(&mut self, open: Open) {
        let name = self.disks[open.disk].name.clone();
        let old = self.wire.cluster.lookup(&name, "", 0).expect("working VDI");
        self.seq += 1;
        let tag = format!("ext{}", self.seq);
        let now = self.wire.now;
        if self.rng.chance(self.cfg.snapshot_windows) {
            let p = self
                .wire
                .cluster
                .begin_snapshot_behind_back(now, &name, &tag)
                .unwrap_or_else(|e| fail("snapshot behind the back", e));
            let steps = 1 + self.rng.below(12);
            self.log.push(format!(
                "external snapshot of {name} begins: {old:#x} read-only, {steps} steps until it is rewritten"
            ));
            // sheep's copy takes milliseconds: the window ends after a few
            // steps, or once the clock has moved on (a retry's pause).
            let start = self.wire.now;
            for _ in 0..steps {
                if self.wire.now - start > SNAPSHOT_WINDOW {
                    break;
                }
                self.progress();
            }
            self.wire
                .cluster
                .finish_snapshot_behind_back(p, Restore::AddedOnly)
                .unwrap_or_else(|e| fail("snapshot behind the back", e));
            self.stats.snapshot_windows += 1;
        } else {
            self.wire
                .cluster
                .snapshot_behind_back(now, &name, &tag)
                .unwrap_or_else(|e| fail("snapshot behind the back", e));
        }
        self.disks[open.disk].snapshots.push(SnapModel {
            vid: old,
            data: None,
        });
        self.stats.external_snapshots += 1;
        self.log.push(format!(
            "external snapshot of {name}: {old:#x} is now a snapshot"
        ));
    }

    fn snapshot(&mut self, open: Open) {
        self.seq += 1;
        let tag = if self.rng.chance(500) {
            String::new()
        } else {
            format!("s{}", self.seq)
        };
        match self.control(|e| e.snapshot(&tag)) {
            Ok(ControlDone::Snapshot { snapshot, working }) => {
                assert_eq!(self.volume().vid, working);
                let data = self.data_of(open).clone();
                self.disks[open.disk].snapshots.push(SnapModel {
                    vid: snapshot,
                    data: Some(data),
                });
                self.stats.snapshots += 1;
            }
            other => fail("snapshot", other),
        }
    }

    fn clone_open(&mut self, open: Open) {
        self.seq += 1;
        let name = format!("clone{}", self.seq);
        let n = name.clone();
        match self.control(|e| e.clone_snapshot(&n)) {
            Ok(ControlDone::Cloned { .. }) => {
                let data = self.data_of(open).clone();
                self.disks.push(DiskModel {
                    name,
                    working: Some(data),
                    snapshots: Vec::new(),
                });
                self.stats.clones += 1;
            }
            other => fail("clone", other),
        }
    }

    fn rollback(&mut self, open: Open) {
        match self.control(|e| e.rollback()) {
            Ok(ControlDone::RolledBack { .. }) => {
                let data = self.data_of(open).clone();
                self.disks[open.disk].working = Some(data);
                self.stats.rollbacks += 1;
            }
            other => fail("rollback", other),
        }
    }

    fn resize(&mut self, open: Open) {
        let size = self.data_of(open).len() as u64;
        let new = (size + self.rng.below(4 * MIB)).min(MAX_DISK);
        match self.control(|e| e.resize(new)) {
            Ok(ControlDone::Resized { size }) => {
                assert_eq!(size, new);
                self.data_of(open).resize(new as usize, 0);
                self.stats.resizes += 1;
            }
            other => fail("resize", other),
        }
        assert_eq!(self.volume().size, new);
    }

    fn delete_random(&mut self) {
        if self.disks.is_empty() {
            return;
        }
        self.close();
        let d = self.rng.below(self.disks.len() as u64) as usize;
        let name = self.disks[d].name.clone();
        let snaps = self.disks[d].snapshots.len();
        if snaps > 0 && self.rng.chance(600) {
            let i = self.rng.below(snaps as u64) as usize;
            let vid = self.disks[d].snapshots[i].vid;
            let id = self.snap_id(vid);
            match self.control(|e| e.delete(&name, Some(Snapshot::Id(id)))) {
                Ok(ControlDone::Deleted { vid: got }) => assert_eq!(got, vid),
                other => fail("delete snapshot", other),
            }
            self.disks[d].snapshots.remove(i);
        } else if self.disks[d].working.is_some() {
            match self.control(|e| e.delete(&name, None)) {
                Ok(ControlDone::Deleted { .. }) => {}
                other => fail("delete", other),
            }
            self.disks[d].working = None;
        } else {
            return;
        }
        if self.disks[d].working.is_none() && self.disks[d].snapshots.is_empty() {
            self.disks.remove(d);
        }
        self.stats.deletes += 1;
    }

    /// Run `ops` random operations; a failure shows the last operations.
    pub fn run(&mut self, ops: u64) {
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_inner(ops)));
        if let (Some(rec), Some(path)) = (&self.wire.recording, std::env::var_os("SIM_RECORD")) {
            let mut out = Vec::new();
            for (req, rsp) in rec {
                for b in [req, rsp] {
                    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                    out.extend_from_slice(b);
                }
            }
            std::fs::write(path, out).expect("write recording");
        }
        if let Err(e) = res {
            eprintln!(
                "seed {} failed after {} operations; last operations:\n{}",
                self.cfg.seed,
                self.stats.ops,
                self.log.dump()
            );
            std::panic::resume_unwind(e);
        }
    }

    fn run_inner(&mut self, ops: u64) {
        let target = self.stats.ops + ops;
        while self.stats.ops < target {
            let Some(open) = self.open else {
                self.open_random();
                continue;
            };
            if std::env::var_os("SIM_AUDIT").is_some() && self.pending.is_empty() {
                self.audit("previous operation");
            }
            let r = self.rng.below(1000);
            let working = open.snap.is_none();
            let has_writes = self.pending.values().any(|p| matches!(p, Pending::Write));
            if working && has_writes && self.rng.chance(self.cfg.external_snapshots) {
                self.external_snapshot(open);
            } else if self.rng.chance(self.cfg.disconnects) && self.wire.engine.volume().is_some() {
                self.log.push("connection dropped".to_owned());
                self.wire.disconnect();
            } else if r < 900 {
                if self.pending.len() >= QUEUE / 2 {
                    self.progress();
                } else {
                    self.submit_io(open);
                    self.progress();
                }
            } else if r < 915 && working {
                self.snapshot(open);
            } else if r < 925 && !working {
                self.clone_open(open);
            } else if r < 930 && !working {
                self.rollback(open);
            } else if r < 940 && working {
                self.resize(open);
            } else if r < 955 {
                self.delete_random();
            } else if r < 990 {
                self.open_random();
            } else {
                self.drain();
                self.verify_open();
            }
        }
        self.drain();
        self.verify_open();
    }

    /// Check every disk and known snapshot on the server itself (not through
    /// the engine): each index entry names an object that exists, and the
    /// bytes equal the model. Slow; for debugging a failing seed.
    pub fn audit(&mut self, after: &str) {
        use sheepdog_core::oid::{Oid, Vid};
        for d in &self.disks {
            let mut vdis: Vec<(u32, &Vec<u8>)> = Vec::new();
            if let Some(w) = &d.working {
                let vid = self
                    .wire
                    .cluster
                    .lookup(&d.name, "", 0)
                    .expect("working vid");
                vdis.push((vid, w));
            }
            for s in &d.snapshots {
                if let Some(data) = &s.data {
                    vdis.push((s.vid, data));
                }
            }
            for (vid, data) in vdis {
                for (idx, chunk) in data.chunks(MIB as usize).enumerate() {
                    let entry = self.wire.cluster.index_entry(vid, idx as u32).unwrap_or(0);
                    let got = match Vid::new(entry) {
                        Err(_) => vec![0u8; chunk.len()],
                        Ok(owner) => {
                            let oid = Oid::data(owner, idx as u32);
                            self.wire
                                .cluster
                                .read_object(oid, 0, chunk.len())
                                .unwrap_or_else(|| panic!("after {after}: {} vid {vid:x} idx {idx}: object {oid} missing\n{}", d.name, self.log.dump()))
                        }
                    };
                    assert!(
                        got == chunk,
                        "after {after}: {} vid {vid:x} idx {idx} differs\n{}",
                        d.name,
                        self.log.dump()
                    );
                }
            }
        }
    }

    /// Read the whole open VDI and compare it with the model.
    pub fn verify_open(&mut self) {
        let Some(open) = self.open else { return };
        let size = self.data_of(open).len() as u64;
        let token = self.next_token;
        self.next_token += 1;
        self.engine()
            .read(token, 0, size)
            .unwrap_or_else(|e| fail("read", e));
        let expected = self.data_of(open).clone();
        self.wire.bufs.insert(token, vec![0x5A; size as usize]);
        self.pending.insert(token, Pending::Read { expected });
        self.stats.ops += 1;
        self.drain();
    }
}
