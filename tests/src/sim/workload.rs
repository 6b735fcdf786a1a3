//! Random operation sequences through the engine against the pure server,
//! checked against [`DiskModel`]s: writes, reads and discards of random
//! ranges (several in flight), snapshots, snapshots taken behind the
//! engine's back, clones, rollbacks, resizes, deletes, reopening, and
//! dropped connections.
//!
//! Against a hostile server (`FaultRates::hostile`) any operation may end
//! in an error, but none may report a success it did not get: a failed
//! write or discard makes its range unknown in the model, a failed control
//! operation is resynchronised from what the server holds, reads are
//! checked on known bytes only, and at the end every known byte must be on
//! the server ([`Workload::audit`]).

use std::collections::HashMap;
use std::ops::Range;

use sheepdog_core::address::Snapshot;
use sheepdog_core::engine::{ControlDone, CreateOptions, Error, Event, Token, VolumeInfo};
use sheepdog_core::redundancy::Redundancy;

use super::model::{first_mismatch, Contents, DiskModel, Ranges, SnapModel};
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
                hostile: 0,
                node_death: 2,
            },
            external_snapshots: 8,
            snapshot_windows: 500,
            disconnects: 5,
            max_io: 3 * MIB,
            reclaim_delay: 4,
        }
    }

    /// [`Config::stormy`] with about one request in a hundred answered as a
    /// hostile or broken server would.
    pub fn hostile(seed: u64) -> Config {
        let mut cfg = Config::stormy(seed);
        cfg.faults.hostile = 10;
        cfg
    }

    /// Whether hostile replies are on: operations may then fail.
    pub fn is_hostile(&self) -> bool {
        self.faults.hostile > 0
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
    /// Reads that ended in an error (hostile mode only).
    pub reads_failed: u64,
    /// Writes and discards that ended in an error (hostile mode only).
    pub writes_failed: u64,
    /// Writes and discards refused when submitted (hostile mode only: the
    /// VDI is closed and opened again).
    pub writes_refused: u64,
    /// Control operations that ended in an error (hostile mode only).
    pub controls_failed: u64,
    /// Reads compared on part of their bytes only, the rest being unknown.
    pub reads_partial: u64,
}

impl Stats {
    /// Operations that ended in an error (refused submissions not counted).
    pub fn failed(&self) -> u64 {
        self.reads_failed + self.writes_failed + self.controls_failed
    }

    /// Add the counters of another run.
    pub fn add(&mut self, o: &Stats) {
        let Stats {
            ops,
            reads_checked,
            bytes_written,
            snapshots,
            external_snapshots,
            snapshot_windows,
            clones,
            rollbacks,
            deletes,
            resizes,
            reads_failed,
            writes_failed,
            writes_refused,
            controls_failed,
            reads_partial,
        } = o;
        self.ops += ops;
        self.reads_checked += reads_checked;
        self.bytes_written += bytes_written;
        self.snapshots += snapshots;
        self.external_snapshots += external_snapshots;
        self.snapshot_windows += snapshot_windows;
        self.clones += clones;
        self.rollbacks += rollbacks;
        self.deletes += deletes;
        self.resizes += resizes;
        self.reads_failed += reads_failed;
        self.writes_failed += writes_failed;
        self.writes_refused += writes_refused;
        self.controls_failed += controls_failed;
        self.reads_partial += reads_partial;
    }
}

enum Pending {
    /// A write or discard of `range` of the working VDI of `disk`.
    Write {
        disk: usize,
        range: Range<u64>,
        /// Ranges of later writes that failed while this one was in
        /// flight: the model holds their bytes there, so this write's
        /// success does not make them known.
        taint: Vec<Range<u64>>,
    },
    /// A read of `off..off + expected.len()`.
    Read {
        off: u64,
        expected: Vec<u8>,
        /// What was unknown when it was submitted, or became so through
        /// the failure of a write submitted before it.
        unknown: Ranges,
    },
}

/// A read that returned other bytes than the model where writes submitted
/// before it were still in flight (hostile mode): fine if one of those
/// writes fails, a wrong read once all of them have succeeded.
struct Doubt {
    read: Token,
    /// Offset into the read.
    at: u64,
    /// The writes still to complete.
    waiting: Vec<Token>,
}

/// What handling a read or write completion needs besides the wire.
struct Books<'a> {
    pending: &'a mut HashMap<Token, Pending>,
    doubts: &'a mut Vec<Doubt>,
    disks: &'a mut [DiskModel],
    stats: &'a mut Stats,
    log: &'a mut Log,
    hostile: bool,
}

fn overlaps(a: &Range<u64>, b: &Range<u64>) -> bool {
    a.start < b.end && b.start < a.end
}

impl Books<'_> {
    /// Handle one event of a read or write.
    fn on_io_event(&mut self, wire: &mut Wire, ev: &Event) {
        match ev {
            Event::Zeros(z) => {
                let buf = wire.bufs.get_mut(&z.token).expect("buffer of a read");
                buf[z.range.start as usize..z.range.end as usize].fill(0);
            }
            Event::Done { token, result } => {
                let token = *token;
                let buf = wire.bufs.remove(&token).expect("buffer");
                let done = self.pending.remove(&token).expect("pending operation");
                match (done, result) {
                    (_, Err(e)) if !self.hostile => fail(&format!("read or write {token}"), e),
                    (Pending::Read { .. }, Err(e)) => {
                        self.stats.reads_failed += 1;
                        self.log.push(format!("{token}: read failed: {e:?}"));
                    }
                    (Pending::Write { disk, range, .. }, Err(e)) => {
                        self.stats.writes_failed += 1;
                        self.log.push(format!(
                            "{token}: write {}+{} failed: {e:?}",
                            range.start,
                            range.end - range.start
                        ));
                        self.write_failed(token, disk, range);
                    }
                    (Pending::Write { disk, range, taint }, Ok(())) => {
                        self.write_done(token, disk, range, &taint);
                    }
                    (
                        Pending::Read {
                            off,
                            expected,
                            unknown,
                        },
                        Ok(()),
                    ) => {
                        self.check_read(token, off, &expected, &buf, &unknown);
                        self.stats.reads_checked += 1;
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

    /// A write or discard failed: the cluster may hold old or new bytes in
    /// its range, so do writes still in flight from before it (where the
    /// model holds its bytes) and reads submitted after it.
    fn write_failed(&mut self, token: Token, disk: usize, range: Range<u64>) {
        self.disks[disk]
            .working
            .as_mut()
            .expect("working VDI of a write")
            .forget(range.clone());
        for (&t, p) in self.pending.iter_mut() {
            match p {
                Pending::Write {
                    range: r, taint, ..
                } if t < token && overlaps(r, &range) => {
                    taint.push(range.clone());
                }
                Pending::Read { unknown, .. } if t > token => unknown.insert(range.clone()),
                _ => {}
            }
        }
        self.doubts.retain(|d| !d.waiting.contains(&token));
    }

    /// A write or discard succeeded: its bytes are known again (but for
    /// those of later writes that failed meanwhile).
    fn write_done(&mut self, token: Token, disk: usize, range: Range<u64>, taint: &[Range<u64>]) {
        let w = self.disks[disk]
            .working
            .as_mut()
            .expect("working VDI of a write");
        if taint.is_empty() {
            w.learn(range);
        } else {
            let mut t = Ranges::default();
            for r in taint {
                t.insert(r.clone());
            }
            for part in t.gaps(range) {
                w.learn(part);
            }
        }
        for d in self.doubts.iter_mut() {
            d.waiting.retain(|&w| w != token);
            if d.waiting.is_empty() {
                panic!(
                    "read {} differs from the model at byte {:?} (the writes in flight when it was submitted all succeeded)",
                    d.read,
                    Some(d.at)
                );
            }
        }
    }

    /// Compare a read with what the model expected on the bytes known.
    /// In hostile mode, bytes that writes submitted before the read and
    /// still in flight cover are doubts rather than failures.
    fn check_read(
        &mut self,
        token: Token,
        off: u64,
        expected: &[u8],
        got: &[u8],
        unknown: &Ranges,
    ) {
        let end = off + expected.len() as u64;
        if !unknown.within(off..end).is_empty() {
            self.stats.reads_partial += 1;
        }
        let earlier: Vec<(Token, Range<u64>)> = if self.hostile {
            self.pending
                .iter()
                .filter_map(|(&t, p)| match p {
                    Pending::Write { range, .. } if t < token && overlaps(range, &(off..end)) => {
                        Some((t, range.start.max(off)..range.end.min(end)))
                    }
                    _ => None,
                })
                .collect()
        } else {
            Vec::new()
        };
        if earlier.is_empty() {
            if let Some(at) = first_mismatch(expected, got, off, unknown) {
                wrong_read(token, at - off, expected, got);
            }
            return;
        }
        // Pieces where the same writes in flight cover every byte.
        let mut cuts = vec![off, end];
        for (_, r) in &earlier {
            cuts.push(r.start);
            cuts.push(r.end);
        }
        cuts.sort_unstable();
        cuts.dedup();
        for piece in cuts.windows(2) {
            let (a, b) = (piece[0], piece[1]);
            let mut covering: Vec<Token> = earlier
                .iter()
                .filter(|(_, r)| r.start <= a && b <= r.end)
                .map(|&(t, _)| t)
                .collect();
            let (s, e) = ((a - off) as usize, (b - off) as usize);
            let Some(at) = first_mismatch(&expected[s..e], &got[s..e], a, unknown) else {
                continue;
            };
            if covering.is_empty() {
                wrong_read(token, at - off, expected, got);
            }
            covering.sort_unstable();
            self.log.push(format!(
                "{token}: read differs at byte {} under writes {covering:?} still in flight",
                at - off
            ));
            self.doubts.push(Doubt {
                read: token,
                at: at - off,
                waiting: covering,
            });
        }
    }
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
    doubts: Vec<Doubt>,
    next_token: Token,
    seq: u64,
    /// The last operations.
    pub log: Log,
}

/// A read that does not match the model at `i` of its bytes.
fn wrong_read(token: Token, i: u64, expected: &[u8], got: &[u8]) -> ! {
    let at = i as usize;
    panic!(
        "read {token} differs from the model at byte {:?} (model {:#04x}, read {:#04x})",
        Some(i),
        expected[at],
        got[at]
    )
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
        static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if *TRACE.get_or_init(|| std::env::var_os("SIM_TRACE").is_some()) {
            eprintln!("{line}");
        }
        if self.lines.len() == 4000 {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    /// The last 60 lines (or `SIM_LOG_LINES`, up to 4000), oldest first.
    pub fn dump(&self) -> String {
        let keep = std::env::var("SIM_LOG_LINES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(60);
        let skip = self.lines.len().saturating_sub(keep);
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
            doubts: Vec::new(),
            next_token: 1,
            seq: 0,
            log: Log::default(),
        }
    }

    fn engine(&mut self) -> &mut SimEngine {
        &mut self.wire.engine
    }

    /// The model's books and the wire, borrowed apart.
    fn books(&mut self) -> (&mut Wire, Books<'_>) {
        let hostile = self.cfg.is_hostile();
        (
            &mut self.wire,
            Books {
                pending: &mut self.pending,
                doubts: &mut self.doubts,
                disks: &mut self.disks,
                stats: &mut self.stats,
                log: &mut self.log,
                hostile,
            },
        )
    }

    /// Drive until every read and write has completed.
    pub fn drain(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let (wire, mut books) = self.books();
        wire.drive_until(|wire, ev| {
            books.on_io_event(wire, ev);
            books.pending.is_empty()
        });
        assert!(
            self.doubts.is_empty(),
            "doubts left once every write is done"
        );
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

    fn hostile(&self) -> bool {
        self.cfg.is_hostile()
    }

    /// A control operation ended in an error: the end of the run, unless
    /// hostile replies are on.
    fn control_failed(&mut self, what: &str, e: &Error) {
        if !self.hostile() {
            fail(what, e);
        }
        self.stats.controls_failed += 1;
        self.log.push(format!("{what} failed: {e:?}"));
    }

    fn close(&mut self) {
        if self.open.take().is_some() {
            match self.control(|e| e.close()) {
                Ok(_) => {}
                Err(e) => {
                    self.control_failed("close", &e);
                    assert!(
                        self.wire.engine.volume().is_none(),
                        "a failed close left the volume open"
                    );
                }
            }
        }
    }

    /// The working VID of `name` on the server, if it has one.
    fn server_working(&mut self, name: &str) -> Option<u32> {
        let vid = self.wire.cluster.lookup(name, "", 0).ok()?;
        (!self.wire.cluster.is_deleted(vid)).then_some(vid)
    }

    /// The size the server's inode of `vid` gives.
    fn server_size(&self, vid: u32) -> u64 {
        self.wire
            .cluster
            .inode_header(vid)
            .expect("inode of a VDI the server found")
            .vdi_size
    }

    /// Whether snapshot `vid` of `name` is still on the server.
    fn server_has_snapshot(&self, name: &str, vid: u32) -> bool {
        !self.wire.cluster.is_deleted(vid)
            && self
                .wire
                .cluster
                .inode_header(vid)
                .is_some_and(|h| h.is_snapshot() && h.name() == name.as_bytes())
    }

    /// Snapshots of disk `d` on the server that the model does not know
    /// (a snapshot whose reply was lost): recorded, never opened.
    fn adopt_snapshots(&mut self, d: usize) {
        let name = self.disks[d].name.clone();
        let vids: Vec<u32> = self.wire.cluster.vdi_states().keys().copied().collect();
        for vid in vids {
            if self.server_has_snapshot(&name, vid)
                && !self.disks[d].snapshots.iter().any(|s| s.vid == vid)
            {
                self.log
                    .push(format!("{name}: snapshot {vid:#x} found on the server"));
                self.disks[d].snapshots.push(SnapModel { vid, data: None });
            }
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
            hyper: false,
        };
        let n = name.clone();
        match self.control(|e| e.create(&n, opts)) {
            Ok(_) => self.disks.push(DiskModel::new(name, size)),
            Err(e) => {
                self.control_failed("create", &e);
                // NEW_VDI may have been applied; preallocated or not, the
                // new VDI reads as zeros.
                if let Some(vid) = self.server_working(&name) {
                    let size = self.server_size(vid);
                    self.disks.push(DiskModel::new(name, size));
                }
            }
        }
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
        if self.disks.is_empty() {
            return;
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
                    Some(i) => self.disks[d].snapshots[i].data.as_ref().map(Contents::len),
                    None => self.disks[d].working.as_ref().map(Contents::len),
                };
                assert_eq!(Some(info.size), expect, "size of {name}");
                self.open = Some(Open { disk: d, snap });
            }
            // Nothing changed on the server; stay closed.
            Err(e) if self.hostile() => {
                self.control_failed("open", &e);
                assert!(
                    self.wire.engine.volume().is_none(),
                    "a failed open left a volume open"
                );
            }
            other => fail("open", other),
        }
    }

    fn data_of(&mut self, open: Open) -> &mut Contents {
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

    /// A write or discard was refused when submitted: fatal unless hostile
    /// (the engine refuses them once an index write failed for good), and
    /// then the VDI is closed, to be opened again.
    fn write_refused(&mut self, what: &str, e: Error) {
        if !self.hostile() {
            fail(what, e);
        }
        self.stats.writes_refused += 1;
        self.log.push(format!("{what} refused: {e:?}; closing"));
        self.close();
    }

    /// Submit a read of `off..off + len` of the open VDI.
    fn submit_read(&mut self, open: Open, token: Token, off: u64, len: u64, junk: u8) {
        self.engine()
            .read(token, off, len)
            .unwrap_or_else(|e| fail("read", e));
        let data = self.data_of(open);
        let expected = data.slice(off..off + len).to_vec();
        let mut unknown = Ranges::default();
        for r in data.unknown_in(off..off + len) {
            unknown.insert(r);
        }
        // Junk, so that a missing fill shows.
        self.wire.bufs.insert(token, vec![junk; len as usize]);
        self.pending.insert(
            token,
            Pending::Read {
                off,
                expected,
                unknown,
            },
        );
    }

    fn submit_io(&mut self, open: Open) {
        let size = self.data_of(open).len();
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
            if let Err(e) = self.engine().write(token, off, len) {
                return self.write_refused("write", e);
            }
            self.data_of(open).put(off, &data);
            self.wire.bufs.insert(token, data);
            self.pending_write(token, open.disk, off..off + len);
            self.stats.bytes_written += len;
        } else if writable && kind < 50 {
            // Discard whole objects.
            let objects = size.div_ceil(MIB);
            let first = self.rng.below(objects);
            let n = 1 + self.rng.below((objects - first).min(3));
            let off = first * MIB;
            let len = (n * MIB).min(size - off);
            self.log.push(format!("{token}: discard {off}+{len}"));
            if let Err(e) = self.engine().discard(token, off, len) {
                return self.write_refused("discard", e);
            }
            self.data_of(open).zero(off..off + len);
            self.wire.bufs.insert(token, Vec::new());
            self.pending_write(token, open.disk, off..off + len);
        } else {
            let (off, len) = self.random_range(size);
            self.log.push(format!("{token}: read {off}+{len}"));
            self.submit_read(open, token, off, len, 0xA5);
        }
        self.stats.ops += 1;
    }

    /// Write or discard `token` of `disk`'s `range` is under way.
    fn pending_write(&mut self, token: Token, disk: usize, range: Range<u64>) {
        let taint = Vec::new();
        self.pending
            .insert(token, Pending::Write { disk, range, taint });
    }

    /// Let the wire make a little progress, handling events.
    fn progress(&mut self) {
        let rounds = 1 + self.rng.below(4);
        for _ in 0..rounds {
            let (wire, mut books) = self.books();
            while let Some(ev) = wire.engine.poll_event() {
                books.on_io_event(wire, &ev);
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
            // The tag may be written, the snapshot taken: the working VDI
            // reads the same either way, and a new snapshot is recorded.
            Err(e) if self.hostile() => {
                self.control_failed("snapshot", &e);
                self.close();
                self.adopt_snapshots(open.disk);
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
            // NEW_VDI may have been applied.
            Err(e) if self.hostile() => {
                self.control_failed("clone", &e);
                if self.server_working(&name).is_some() {
                    self.log.push(format!("{name}: clone found on the server"));
                    let data = self.data_of(open).clone();
                    self.disks.push(DiskModel {
                        name,
                        working: Some(data),
                        snapshots: Vec::new(),
                    });
                }
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
            // The working VDI may be partly zeroed, deleted, or replaced
            // by the clone of the snapshot.
            Err(e) if self.hostile() => {
                self.control_failed("rollback", &e);
                self.close();
                let name = self.disks[open.disk].name.clone();
                let working = self
                    .server_working(&name)
                    .map(|vid| Contents::unknown(self.server_size(vid)));
                self.log.push(format!(
                    "{name}: working VDI after the failed rollback: {:?} bytes, unknown",
                    working.as_ref().map(Contents::len)
                ));
                self.disks[open.disk].working = working;
            }
            other => fail("rollback", other),
        }
    }

    fn resize(&mut self, open: Open) {
        let size = self.data_of(open).len();
        let new = (size + self.rng.below(4 * MIB)).min(MAX_DISK);
        match self.control(|e| e.resize(new)) {
            Ok(ControlDone::Resized { size }) => {
                assert_eq!(size, new);
                self.data_of(open).grow(new, true);
                self.stats.resizes += 1;
                assert_eq!(self.volume().size, new);
            }
            // The size may be written: take it from the inode.
            Err(e) if self.hostile() => {
                self.control_failed("resize", &e);
                self.close();
                let name = self.disks[open.disk].name.clone();
                let vid = self
                    .server_working(&name)
                    .expect("working VDI after a failed resize");
                let got = self.server_size(vid);
                assert!(
                    got == size || got == new,
                    "{name} is {got} bytes after a failed resize from {size} to {new}"
                );
                self.data_of(open).grow(got, false);
            }
            other => fail("resize", other),
        }
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
                Ok(ControlDone::Deleted { vid: got }) => {
                    assert_eq!(got, vid);
                    self.disks[d].snapshots.remove(i);
                    self.stats.deletes += 1;
                }
                // Its index may be partly zeroed, or it may be gone.
                Err(e) if self.hostile() => {
                    self.control_failed("delete snapshot", &e);
                    if self.server_has_snapshot(&name, vid) {
                        self.disks[d].snapshots[i].data = None;
                    } else {
                        self.disks[d].snapshots.remove(i);
                    }
                }
                other => fail("delete snapshot", other),
            }
        } else if self.disks[d].working.is_some() {
            match self.control(|e| e.delete(&name, None)) {
                Ok(ControlDone::Deleted { .. }) => {
                    self.disks[d].working = None;
                    self.stats.deletes += 1;
                }
                // Its index may be partly zeroed, or it may be gone.
                Err(e) if self.hostile() => {
                    self.control_failed("delete", &e);
                    let working = self
                        .server_working(&name)
                        .map(|vid| Contents::unknown(self.server_size(vid)));
                    self.disks[d].working = working;
                }
                other => fail("delete", other),
            }
        } else {
            return;
        }
        if self.disks[d].working.is_none() && self.disks[d].snapshots.is_empty() {
            self.disks.remove(d);
        }
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
        // SIM_AUDIT audits after every operation, SIM_AUDIT=N from the
        // N-th on.
        let audit_from = std::env::var("SIM_AUDIT")
            .ok()
            .map(|v| v.parse::<u64>().unwrap_or(0));
        while self.stats.ops < target {
            let Some(open) = self.open else {
                self.open_random();
                continue;
            };
            if audit_from.is_some_and(|n| self.stats.ops >= n) && self.pending.is_empty() {
                self.audit("previous operation");
            }
            let r = self.rng.below(1000);
            let working = open.snap.is_none();
            let has_writes = self
                .pending
                .values()
                .any(|p| matches!(p, Pending::Write { .. }));
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
        if self.hostile() {
            // Every write reported done is on the server.
            self.audit("the run");
        }
    }

    /// Check every disk and known snapshot on the server itself (not through
    /// the engine): each index entry names an object that exists, and the
    /// bytes the model knows equal the model. Slow; for debugging a failing
    /// seed, and at the end of hostile runs.
    pub fn audit(&mut self, after: &str) {
        use sheepdog_core::oid::{Oid, Vid};
        for d in &self.disks {
            let mut vdis: Vec<(u32, &Contents)> = Vec::new();
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
                for idx in 0..data.len().div_ceil(MIB) {
                    let range = idx * MIB..((idx + 1) * MIB).min(data.len());
                    let len = (range.end - range.start) as usize;
                    if data.unknown_in(range.clone()) == [range.clone()] {
                        continue;
                    }
                    let entry = self.wire.cluster.index_entry(vid, idx as u32).unwrap_or(0);
                    let got = match Vid::new(entry) {
                        Err(_) => vec![0u8; len],
                        Ok(owner) => {
                            let oid = Oid::data(owner, idx as u32);
                            self.wire
                                .cluster
                                .read_object(oid, 0, len)
                                .unwrap_or_else(|| panic!("after {after}: {} vid {vid:x} idx {idx}: object {oid} missing\n{}", d.name, self.log.dump()))
                        }
                    };
                    let at = data.first_mismatch(range.clone(), &got);
                    assert!(
                        at.is_none(),
                        "after {after}: {} vid {vid:x} idx {idx} (index entry {entry:#x}) differs at byte {at:?}\n{}",
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
        let size = self.data_of(open).len();
        let token = self.next_token;
        self.next_token += 1;
        self.submit_read(open, token, 0, size, 0x5A);
        self.stats.ops += 1;
        self.drain();
    }
}
