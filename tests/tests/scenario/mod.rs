//! Set-up shared by the scenario tests: a wire to the reference server,
//! control operations and reads and writes driven to completion, and
//! what the server saw.
#![allow(dead_code)]

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use sheepdog_core::address::Snapshot;
use sheepdog_core::engine::{ControlDone, CreateOptions, Error, Event, Token, VolumeInfo};
use sheepdog_core::inode::InodeRange;
use sheepdog_core::list::{ListEntry, ListEvent, Lister};
use sheepdog_core::oid::{Oid, OidKind, Vid};
use sheepdog_core::receive::{NoBuffers, Receiver};
use sheepdog_core::redundancy::Redundancy;
use sheepdog_core::wire::{Opcode, Request, Response, ResultCode, HEADER_LEN, VDI_BITMAP_LEN};
use sheepdog_tests::server::{Cluster, ClusterConfig};
use sheepdog_tests::sim::rng::Rng;
use sheepdog_tests::sim::wire::{SimEngine, Wire};

pub const MIB: u64 = 1 << 20;
/// Object size of the default cluster (`block_size_shift` 22).
pub const OBJ: u64 = 4 * MIB;
/// Index entries the simulated engine can cache.
pub const INDEX_ENTRIES: usize = 1 << 16;
/// The retry policy of [`Wire`]: first backoff and retries.
pub const FIRST_BACKOFF: u64 = 1_000_000;
pub const MAX_RETRIES: u32 = 12;

// ----- set-up ----------------------------------------------------------------

pub fn wire_on(config: ClusterConfig) -> Wire {
    Wire::new(Cluster::new(config), 1, INDEX_ENTRIES)
}

/// A wire to a default cluster (3 copies, 4 MiB objects, no locking).
pub fn wire() -> Wire {
    wire_on(ClusterConfig::default())
}

/// A wire to a cluster whose objects are 1 MiB, so small disks have many.
pub fn small_objects(seed: u64) -> Wire {
    let config = ClusterConfig::default().with_block_size_shift(20);
    Wire::new(Cluster::new(config), seed, INDEX_ENTRIES)
}

pub fn token() -> Token {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Deterministic non-trivial bytes.
pub fn pattern(seed: u64, len: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ len);
    let mut out = vec![0u8; len as usize];
    rng.fill(&mut out);
    out
}

pub fn data(vid: u32, idx: u32) -> Oid {
    Oid::data(Vid::new(vid).expect("vid"), idx)
}

pub fn inode_of(vid: u32) -> Oid {
    Oid::inode(Vid::new(vid).expect("vid"))
}

pub fn opts(size: u64) -> CreateOptions {
    CreateOptions {
        size,
        redundancy: Redundancy::ClusterDefault,
        block_size_shift: 0,
        prealloc: false,
        hyper: false,
    }
}

// ----- control operations, driven to completion --------------------------------

/// Start a control operation and drive until it finishes.
pub fn control(
    w: &mut Wire,
    start: impl FnOnce(&mut SimEngine) -> Result<(), Error>,
) -> ControlDone {
    start(&mut w.engine).unwrap_or_else(|e| panic!("control operation refused: {e:?}"));
    let mut out = None;
    w.drive_until(|_, ev| match ev {
        Event::Control(done) => {
            out = Some(done.clone());
            true
        }
        other => panic!("unexpected event {other:?}"),
    });
    out.expect("control outcome")
}

pub fn create(w: &mut Wire, name: &str, size: u64) -> u32 {
    match control(w, |e| e.create(name, opts(size))) {
        ControlDone::Created { vid } => vid,
        other => panic!("create {name}: {other:?}"),
    }
}

pub fn open_at(w: &mut Wire, name: &str, sel: Option<Snapshot<'_>>, lock: bool) -> ControlDone {
    control(w, |e| e.open(name, sel, lock))
}

pub fn open(w: &mut Wire, name: &str) -> VolumeInfo {
    match open_at(w, name, None, false) {
        ControlDone::Opened(info) => info,
        other => panic!("open {name}: {other:?}"),
    }
}

pub fn open_snapshot(w: &mut Wire, name: &str, tag: &str) -> VolumeInfo {
    match open_at(w, name, Some(Snapshot::Tag(tag)), false) {
        ControlDone::Opened(info) => info,
        other => panic!("open {name}:{tag}: {other:?}"),
    }
}

pub fn close(w: &mut Wire) {
    assert_eq!(control(w, |e| e.close()), ControlDone::Closed);
}

/// Snapshot the open VDI; (snapshot VID, new working VID).
pub fn snapshot(w: &mut Wire, tag: &str) -> (u32, u32) {
    match control(w, |e| e.snapshot(tag)) {
        ControlDone::Snapshot { snapshot, working } => (snapshot, working),
        other => panic!("snapshot {tag}: {other:?}"),
    }
}

// ----- reads and writes ---------------------------------------------------------

pub fn submit_write(w: &mut Wire, offset: u64, bytes: &[u8]) -> Token {
    let t = token();
    w.engine
        .write(t, offset, bytes.len() as u64)
        .unwrap_or_else(|e| panic!("write {offset}+{}: {e:?}", bytes.len()));
    w.bufs.insert(t, bytes.to_vec());
    t
}

pub fn submit_read(w: &mut Wire, offset: u64, len: u64) -> Token {
    let t = token();
    w.engine
        .read(t, offset, len)
        .unwrap_or_else(|e| panic!("read {offset}+{len}: {e:?}"));
    // Junk, so that a range the engine forgets to fill shows.
    w.bufs.insert(t, vec![0xA5; len as usize]);
    t
}

pub fn submit_discard(w: &mut Wire, offset: u64, len: u64) -> Token {
    let t = token();
    w.engine
        .discard(t, offset, len)
        .unwrap_or_else(|e| panic!("discard {offset}+{len}: {e:?}"));
    w.bufs.insert(t, Vec::new());
    t
}

/// Handle one read/write event: fill holes, note completions.
pub fn on_io_event(w: &mut Wire, ev: &Event, done: &mut HashMap<Token, Result<(), Error>>) {
    match ev {
        Event::Zeros(z) => {
            let buf = w.bufs.get_mut(&z.token).expect("buffer of a read");
            buf[z.range.start as usize..z.range.end as usize].fill(0);
        }
        Event::Done { token, result } => {
            assert!(
                done.insert(*token, *result).is_none(),
                "{token} completed twice"
            );
        }
        // The engine promises never to send this buffer again: poison it,
        // so that a broken promise shows up as wrong data.
        Event::DataDone { token } => {
            if let Some(buf) = w.bufs.get_mut(token) {
                buf.fill(0xEE);
            }
        }
        Event::Control(c) => panic!("unexpected control outcome {c:?}"),
    }
}

/// Drive until every token completed; their results.
pub fn finish(w: &mut Wire, tokens: &[Token]) -> HashMap<Token, Result<(), Error>> {
    let mut done = HashMap::new();
    if tokens.is_empty() {
        return done;
    }
    w.drive_until(|w, ev| {
        on_io_event(w, ev, &mut done);
        tokens.iter().all(|t| done.contains_key(t))
    });
    done
}

pub fn finish_ok(w: &mut Wire, tokens: &[Token]) {
    let done = finish(w, tokens);
    for t in tokens {
        assert_eq!(done[t], Ok(()), "operation {t}");
    }
}

pub fn write(w: &mut Wire, offset: u64, bytes: &[u8]) -> Result<(), Error> {
    let t = submit_write(w, offset, bytes);
    let r = finish(w, &[t])[&t];
    w.bufs.remove(&t);
    r
}

pub fn read(w: &mut Wire, offset: u64, len: u64) -> Result<Vec<u8>, Error> {
    let t = submit_read(w, offset, len);
    let r = finish(w, &[t])[&t];
    let buf = w.bufs.remove(&t).expect("read buffer");
    r.map(|()| buf)
}

pub fn discard(w: &mut Wire, offset: u64, len: u64) -> Result<(), Error> {
    let t = submit_discard(w, offset, len);
    let r = finish(w, &[t])[&t];
    w.bufs.remove(&t);
    r
}

// ----- what the server saw --------------------------------------------------------

/// A request as the server saw it, and the result it got.
#[derive(Clone, Debug)]
pub struct Seen {
    pub req: Request,
    pub payload: Vec<u8>,
    pub result: ResultCode,
}

impl Seen {
    pub fn oid(&self) -> Option<Oid> {
        self.req.obj().map(|a| a.oid)
    }

    pub fn is(&self, opcode: Opcode, oid: Oid) -> bool {
        self.req.opcode == opcode && self.oid() == Some(oid)
    }

    /// The index entries a WRITE_OBJ to `vid`'s inode sets, with their
    /// values.
    pub fn index_update(&self, vid: u32) -> Option<(Range<u32>, Vec<u32>)> {
        if !self.is(Opcode::WriteObj, inode_of(vid)) {
            return None;
        }
        let a = self.req.obj()?;
        let range = InodeRange {
            offset: a.offset,
            len: self.req.data_length,
        }
        .index_entries()?;
        let values = self
            .payload
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        Some((range, values))
    }

    /// Whether it writes (creates or overwrites) a data object.
    pub fn writes_data(&self) -> bool {
        matches!(
            self.req.opcode,
            Opcode::WriteObj | Opcode::CreateAndWriteObj
        ) && self.oid().is_some_and(|o| o.kind() == OidKind::Data)
    }
}

/// Start recording (again) what the server sees.
pub fn record(w: &mut Wire) {
    w.recording = Some(Vec::new());
}

/// What the server saw since the last call (recording continues).
pub fn recorded(w: &mut Wire) -> Vec<Seen> {
    let rec = w.recording.replace(Vec::new()).unwrap_or_default();
    rec.into_iter()
        .map(|(q, r)| Seen {
            req: Request::parse_bytes(&q[..HEADER_LEN]).expect("request header"),
            payload: q[HEADER_LEN..].to_vec(),
            result: Response::parse_bytes(&r[..HEADER_LEN])
                .expect("response header")
                .result,
        })
        .collect()
}

pub fn opcodes(seen: &[Seen]) -> Vec<Opcode> {
    seen.iter().map(|s| s.req.opcode).collect()
}

/// The contents of `vid` as the server holds them: each object through
/// the inode's own index entry, holes as zeros; an error names an entry
/// whose object is gone.
pub fn try_server_contents(cluster: &Cluster, vid: u32) -> Result<Vec<u8>, String> {
    let h = cluster.inode_header(vid).expect("inode");
    let obj = 1u64 << h.block_size_shift;
    let mut out = vec![0u8; h.vdi_size as usize];
    for (idx, chunk) in out.chunks_mut(obj as usize).enumerate() {
        let entry = cluster.index_entry(vid, idx as u32).expect("index entry");
        if let Some(owner) = Vid::from_entry(entry) {
            let oid = Oid::data(owner, idx as u32);
            let got = cluster
                .read_object(oid, 0, chunk.len())
                .ok_or_else(|| format!("vid {vid:#x} entry {idx} names {oid}, which is gone"))?;
            chunk.copy_from_slice(&got);
        }
    }
    Ok(out)
}

pub fn server_contents(cluster: &Cluster, vid: u32) -> Vec<u8> {
    try_server_contents(cluster, vid).unwrap_or_else(|e| panic!("{e}"))
}

pub fn assert_same(got: &[u8], want: &[u8], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(at) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!(
            "{what}: differs first at byte {at} (object {} of 4 MiB, {} of 1 MiB)",
            at as u64 / OBJ,
            at as u64 / MIB
        );
    }
}

/// Run a [`Lister`] against the cluster directly.
pub fn list(cluster: &mut Cluster) -> Vec<ListEntry> {
    list_with(cluster, |_, reply| reply).expect("listing")
}

/// Run a [`Lister`] against the cluster, each reply passed through
/// `change` first; the entries, or the error the listing ended with.
pub fn list_with(
    cluster: &mut Cluster,
    mut change: impl FnMut(&Request, Vec<u8>) -> Vec<u8>,
) -> Result<Vec<ListEntry>, Error> {
    let mut lister = Lister::new(
        vec![0u8; VDI_BITMAP_LEN],
        vec![0u8; VDI_BITMAP_LEN],
        1 << 16,
    )
    .expect("lister");
    let mut buf = [0u8; HEADER_LEN];
    let mut out = Vec::new();
    loop {
        while let Some(ev) = lister.poll_event() {
            match ev {
                ListEvent::Vdi(e) => out.push(e),
                ListEvent::Done(r) => return r.map(|()| out),
            }
        }
        let n = lister
            .poll_transmit(&mut buf)
            .expect("a header-sized buffer")
            .expect("a request or an event");
        let req = Request::parse_bytes(&buf[..n]).expect("request");
        let bytes = change(&req, cluster.handle(0, &req, &[]).to_bytes());
        // Through the one receive path, a few bytes at a time.
        let mut rx = Receiver::new();
        let mut scratch = vec![0u8; 1 << 16];
        let mut no_bufs = NoBuffers;
        let mut at = 0;
        while at < bytes.len() {
            let into = rx.buffer(&mut lister, &mut no_bufs, &mut scratch);
            let n = into.len().min(bytes.len() - at).min(4000);
            into[..n].copy_from_slice(&bytes[at..at + n]);
            at += n;
            if rx.advance(&mut lister, n, &scratch, 0).is_err() {
                // The connection would be dropped; the listing has ended.
                break;
            }
        }
    }
}
