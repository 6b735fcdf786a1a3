//! `serve --vhost-user-blk SOCKET VDI`: the volume as a vhost-user-blk
//! device, so that QEMU's virtio-blk talks to the tool through the guest's
//! shared memory instead of through an NBD socket (QEMU: `-object
//! memory-backend-memfd,id=mem,size=...,share=on -numa node,memdev=mem
//! -chardev socket,id=c,path=SOCKET -device
//! vhost-user-blk-pci,chardev=c,num-queues=N`).
//!
//! rust-vmm's crates speak the protocol, map the guest's memory and walk
//! the virtqueues; the requests go to the same [`Export`] the NBD server
//! uses: one engine for all queues, so its ordering and guarantees are the
//! NBD server's (a write is completed once its data and index are on the
//! cluster; a flush waits for the writes before it; failover; live
//! snapshots; the VDI lock). One thread serves every queue: it takes every
//! request the queues hold, starts it on the export, completes each as soon
//! as it is done, and takes new ones at every turn while others wait for
//! the cluster (`virtio_blk` says what the bytes mean).

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread;
use std::time::Duration;

use sheepdog_core::nbd::cmd_flags;
use sheepdog_core::nbd::request::{Command, Request as NbdRequest};
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost::vhost_user::Listener;
use vhost_user_backend::{VhostUserBackendMut, VhostUserDaemon, VringRwLock, VringT};
use virtio_queue::{DescriptorChain, QueueOwnedT, QueueT};
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryLoadGuard, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier,
};

use super::export::{Export, State};
use super::virtio_blk::{self as blk, Header, Kind, Segment};
use super::{signal, Config};
use crate::error::CliError;
use crate::io::readiness;
use crate::io::spin::Spin;
use crate::target::Target;

/// Queues the device offers (QEMU's `num-queues` may ask for fewer).
pub const MAX_QUEUES: usize = 8;
/// Descriptors per queue.
const QUEUE_SIZE: usize = 256;
/// Segments per request.
const SEG_MAX: u32 = 126;
/// The largest segment. SeaBIOS takes `size_max × seg_max / 512` as a
/// 16-bit count of sectors per request: larger, it wraps (to 0 for 32 MiB
/// segments, and it then sends empty requests forever).
const SIZE_MAX: u32 = 256 << 10;
/// The largest request and discard: one 32 MiB NBD request.
const MAX_IO: u32 = 32 << 20;
/// `VIRTIO_RING_F_INDIRECT_DESC`.
const F_INDIRECT_DESC: u64 = 1 << 28;

type Mem = GuestMemoryAtomic<GuestMemoryMmap>;
type Chain = DescriptorChain<GuestMemoryLoadGuard<GuestMemoryMmap>>;

/// What one descriptor chain is waiting for.
struct Waiting {
    queue: usize,
    chain: Chain,
    /// The export requests it became (discard and write-zeroes may be
    /// several), still running.
    left: usize,
    status: u8,
    /// A read's bytes, or the device id.
    data: Vec<u8>,
}

/// The device.
struct Blk {
    export: Export,
    mem: Mem,
    event_idx: bool,
    id: [u8; blk::ID_LEN],
    size: u64,
    object_size: u32,
    writable: bool,
    next_cookie: u64,
    /// How long a wait for the cluster looks before it sleeps.
    spin: Spin,
}

fn other(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

/// The chains being served: each until every export request it became is
/// done, then completed at once, whatever the others are doing.
#[derive(Default)]
struct InFlight {
    /// Chains by slot; a completed chain leaves its slot empty.
    slots: Vec<Option<Waiting>>,
    free: Vec<usize>,
    /// Export request (cookie) in flight to the slot of its chain.
    owner: HashMap<u64, usize>,
    /// Chains not yet completed.
    chains: usize,
}

impl InFlight {
    fn insert(&mut self, w: Waiting) -> usize {
        self.chains += 1;
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(w);
                i
            }
            None => {
                self.slots.push(Some(w));
                self.slots.len() - 1
            }
        }
    }

    fn remove(&mut self, slot: usize) -> Option<Waiting> {
        let w = self.slots.get_mut(slot)?.take()?;
        self.chains -= 1;
        self.free.push(slot);
        Some(w)
    }
}

impl Blk {
    /// Serve every queue until nothing is in flight and no queue holds a
    /// request: take what the queues hold, start it on the export, and
    /// complete each chain as soon as its requests are done, taking new
    /// ones while others run. The front end may stop a queue at any moment
    /// (a guest resetting the device): what was taken from it is finished
    /// and dropped, nothing fails.
    fn serve_queues(&mut self, vrings: &[VringRwLock]) {
        let mut flight = InFlight::default();
        let mut ready = Vec::new();
        let mut signal = vec![false; vrings.len()];
        loop {
            for (q, vring) in vrings.iter().enumerate() {
                if usable(vring) {
                    let _ = vring.disable_notification();
                    self.take(q, vring, &mut flight, &mut signal);
                }
            }
            let failed = matches!(self.export.state, State::Failed(_));
            if !failed {
                if let Err(e) = self.export.pump() {
                    eprintln!("vhost-user-blk: {}: {e}", self.export.name);
                    self.export.fail_all(e);
                }
            }
            let finished = self.finish(vrings, &mut flight, &mut signal);
            if failed && !finished {
                // Failed for good with nothing more to give: what is left
                // gets an I/O error.
                flight.owner.clear();
                for slot in 0..flight.slots.len() {
                    if let Some(mut w) = flight.remove(slot) {
                        w.status = blk::S_IOERR;
                        done(vrings, &w, &mut signal);
                    }
                }
            }
            for (q, vring) in vrings.iter().enumerate() {
                if std::mem::take(&mut signal[q])
                    && (!self.event_idx || vring.needs_notification().unwrap_or(true))
                {
                    let _ = vring.signal_used_queue();
                }
            }
            // Notifications back on, so that the guest kicks again; a
            // request that came before they were is taken now, not slept on.
            let mut more = false;
            for vring in vrings {
                if usable(vring) {
                    more |= vring.enable_notification().unwrap_or(false);
                }
            }
            if more || (failed && flight.chains > 0) {
                continue;
            }
            if flight.chains == 0 {
                return;
            }
            // Sleep on the gateway only: requests the guest adds meanwhile
            // are in shared memory, taken at the next turn (every
            // completion is one), and once nothing is in flight the
            // queues' kicks wake the thread again.
            let want = [self.export.want()];
            let wait = self.export.next_wake().unwrap_or(Duration::from_secs(1));
            if readiness::wait_polling(&want, Some(wait), &mut ready, false, &mut self.spin).is_ok()
                && ready.first().is_some_and(|r| r.read)
            {
                self.export.readable();
            }
        }
    }

    /// Take every chain queue `q` holds and start its requests; a chain
    /// answered at once (an id, a bad request) is given back now. A queue
    /// the front end stopped meanwhile (it does so without waiting for this
    /// thread) holds nothing.
    fn take(&mut self, q: usize, vring: &VringRwLock, flight: &mut InFlight, signal: &mut [bool]) {
        let mem = self.mem.memory();
        let chains: Vec<Chain> = match vring.get_mut().get_queue_mut().iter(mem) {
            Ok(chains) => chains.collect(),
            Err(_) => return,
        };
        for chain in chains {
            let mut w = Waiting {
                queue: q,
                chain,
                left: 0,
                status: blk::S_OK,
                data: Vec::new(),
            };
            let reqs = self.requests(&mut w);
            if reqs.is_empty() {
                give_back(vring, &w);
                signal[q] = true;
                continue;
            }
            w.left = reqs.len();
            let slot = flight.insert(w);
            for (req, data) in reqs {
                flight.owner.insert(req.cookie, slot);
                self.export.start(0, req, data);
            }
        }
    }

    /// Hand the export's finished requests to their chains and give back
    /// the chains that are whole; whether any request finished.
    fn finish(
        &mut self,
        vrings: &[VringRwLock],
        flight: &mut InFlight,
        signal: &mut [bool],
    ) -> bool {
        let finished = self.export.take_finished();
        let any = !finished.is_empty();
        for p in finished {
            let Some(&slot) = flight.owner.get(&p.req.cookie) else {
                continue;
            };
            flight.owner.remove(&p.req.cookie);
            let Some(Some(w)) = flight.slots.get_mut(slot) else {
                continue;
            };
            w.left = w.left.saturating_sub(1);
            if let Some((_, msg)) = &p.error {
                eprintln!(
                    "vhost-user-blk: {} {} {}+{}: {msg}",
                    self.export.name,
                    p.req.command.name(),
                    p.req.offset,
                    p.req.len
                );
                w.status = blk::S_IOERR;
            } else if p.req.command == Command::Read {
                w.data = p.buf;
            }
            if w.left == 0 {
                if let Some(w) = flight.remove(slot) {
                    done(vrings, &w, signal);
                }
            }
        }
        any
    }

    /// The export requests chain `w` asks for (none when it is answered
    /// at once: its status says how).
    fn requests(&mut self, w: &mut Waiting) -> Vec<(NbdRequest, Vec<u8>)> {
        let mem = w.chain.memory();
        let Ok(mut reader) = w.chain.clone().reader(mem) else {
            w.status = blk::S_IOERR;
            return Vec::new();
        };
        let Ok(writer) = w.chain.clone().writer(mem) else {
            w.status = blk::S_IOERR;
            return Vec::new();
        };
        let Ok(head) = reader.read_obj::<[u8; blk::HEADER_LEN]>() else {
            w.status = blk::S_IOERR;
            return Vec::new();
        };
        let h = Header::parse(&head);
        let room = writer.available_bytes().saturating_sub(1);
        let offset = h.sector.saturating_mul(blk::SECTOR);
        let mut out = Vec::new();
        match h.kind {
            Kind::In if Self::empty(room as u64) => {}
            Kind::In => {
                if let Some(r) = self.ranged(Command::Read, offset, room as u64, 0) {
                    out.push((r, Vec::new()));
                } else {
                    w.status = blk::S_IOERR;
                }
            }
            Kind::Out if Self::empty(reader.available_bytes() as u64) => {}
            Kind::Out => {
                let len = reader.available_bytes();
                let mut data = vec![0u8; len];
                let ok = io::Read::read_exact(&mut reader, &mut data).is_ok();
                match self.ranged(Command::Write, offset, len as u64, 0) {
                    Some(r) if ok && self.writable => out.push((r, data)),
                    _ => w.status = blk::S_IOERR,
                }
            }
            Kind::Flush => out.push((self.request(Command::Flush, 0, 0, 0), Vec::new())),
            Kind::GetId => w.data = self.id.to_vec(),
            Kind::Discard | Kind::WriteZeroes => {
                let n = reader.available_bytes() / blk::SEGMENT_LEN;
                for _ in 0..n {
                    let Ok(b) = reader.read_obj::<[u8; blk::SEGMENT_LEN]>() else {
                        w.status = blk::S_IOERR;
                        break;
                    };
                    let s = Segment::parse(&b);
                    let (command, flags) = match h.kind {
                        Kind::Discard => (Command::Trim, 0),
                        _ if s.flags & blk::WRITE_ZEROES_UNMAP != 0 => (Command::WriteZeroes, 0),
                        _ => (Command::WriteZeroes, cmd_flags::NO_HOLE),
                    };
                    let start = s.sector.saturating_mul(blk::SECTOR);
                    let len = u64::from(s.sectors) * blk::SECTOR;
                    if Self::empty(len) {
                        continue;
                    }
                    match self.ranged(command, start, len, flags) {
                        Some(r) if self.writable => out.push((r, Vec::new())),
                        _ => {
                            w.status = blk::S_IOERR;
                            break;
                        }
                    }
                }
            }
            Kind::Other(_) => w.status = blk::S_UNSUPP,
        }
        if w.status != blk::S_OK {
            out.clear();
        }
        out
    }

    fn request(&mut self, command: Command, offset: u64, len: u32, flags: u16) -> NbdRequest {
        self.next_cookie += 1;
        NbdRequest {
            flags,
            command,
            cookie: self.next_cookie,
            offset,
            len,
        }
    }

    /// A request for `offset..offset + len`, if that is within the volume
    /// and not larger than one request may be.
    fn ranged(
        &mut self,
        command: Command,
        offset: u64,
        len: u64,
        flags: u16,
    ) -> Option<NbdRequest> {
        let end = offset.checked_add(len)?;
        if end > self.size || len > u64::from(MAX_IO) || len % blk::SECTOR != 0 {
            return None;
        }
        Some(self.request(command, offset, len as u32, flags))
    }

    /// Whether `len` bytes ask for anything: an empty range is done at
    /// once (the export is never given one).
    fn empty(len: u64) -> bool {
        len == 0
    }
}

/// Whether queue `vring` is enabled and set up: a front end enables every
/// queue it asked for, but a guest driver may set up fewer (SeaBIOS sets
/// up one), and a queue without rings is not to be touched.
fn usable(vring: &VringRwLock) -> bool {
    let state = vring.get_ref();
    state.is_enabled() && state.get_queue().ready()
}

/// Give chain `w` back on its queue and note that the queue is to be
/// signalled after the round.
fn done(vrings: &[VringRwLock], w: &Waiting, signal: &mut [bool]) {
    if let Some(vring) = vrings.get(w.queue) {
        give_back(vring, w);
    }
    if let Some(s) = signal.get_mut(w.queue) {
        *s = true;
    }
}

/// Write a chain's data and status and put it on the used ring. A chain
/// whose memory cannot be written is still given back; on a queue the
/// front end stopped meanwhile it is dropped (the guest's driver, which
/// reset the device, no longer waits for it). Nothing here may end the
/// queues' thread: an error from `handle_event` ends its loop, and every
/// later request of the guest would wait forever.
fn give_back(vring: &VringRwLock, w: &Waiting) {
    let used = complete(w).unwrap_or(0);
    let _ = vring.add_used(w.chain.head_index(), used);
}

/// Write a chain's data (a read's, the id) and status; the bytes written.
fn complete(w: &Waiting) -> io::Result<u32> {
    let mem = w.chain.memory();
    let mut writer = w
        .chain
        .clone()
        .writer(mem)
        .map_err(|e| other(format!("descriptor chain: {e}")))?;
    if w.status == blk::S_OK && !w.data.is_empty() {
        let room = writer.available_bytes().saturating_sub(1);
        io::Write::write_all(&mut writer, &w.data[..w.data.len().min(room)])?;
    }
    writer.write_obj(w.status)?;
    Ok(writer.bytes_written() as u32)
}

impl VhostUserBackendMut for Blk {
    type Bitmap = ();
    type Vring = VringRwLock;

    fn num_queues(&self) -> usize {
        MAX_QUEUES
    }

    fn max_queue_size(&self) -> usize {
        QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        let mut f = blk::F_VERSION_1
            | F_INDIRECT_DESC
            | blk::F_EVENT_IDX
            | blk::F_SIZE_MAX
            | blk::F_SEG_MAX
            | blk::F_BLK_SIZE
            | blk::F_FLUSH
            | blk::F_TOPOLOGY
            | blk::F_MQ
            | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
        if self.writable {
            f |= blk::F_DISCARD | blk::F_WRITE_ZEROES;
        } else {
            f |= blk::F_RO;
        }
        f
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::CONFIG | VhostUserProtocolFeatures::MQ
    }

    fn set_event_idx(&mut self, enabled: bool) {
        self.event_idx = enabled;
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        let config = blk::Config {
            size: self.size,
            size_max: SIZE_MAX,
            max_io: MAX_IO,
            seg_max: SEG_MAX,
            opt_io: self.object_size,
            queues: MAX_QUEUES as u16,
        }
        .bytes();
        let start = (offset as usize).min(config.len());
        let end = start.saturating_add(size as usize).min(config.len());
        let mut out = config[start..end].to_vec();
        out.resize(size as usize, 0);
        out
    }

    fn update_memory(&mut self, mem: Mem) -> io::Result<()> {
        self.mem = mem;
        Ok(())
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        // What ends the queues' thread when the front end leaves: without
        // it the thread is waited for forever and no second QEMU is served.
        new_event_consumer_and_notifier(EventFlag::empty()).ok()
    }

    fn queues_per_thread(&self) -> Vec<u64> {
        // One thread for every queue: one engine, in order.
        vec![(1u64 << MAX_QUEUES) - 1]
    }

    fn handle_event(
        &mut self,
        device_event: u16,
        evset: EventSet,
        vrings: &[VringRwLock],
        _thread_id: usize,
    ) -> io::Result<()> {
        if evset != EventSet::IN {
            return Err(other(format!("unexpected event {evset:?}")));
        }
        let q = device_event as usize;
        if q >= vrings.len() {
            return Err(other(format!("no queue {q}")));
        }
        // The kick was read before this call; every queue is served,
        // whichever kicked.
        self.serve_queues(vrings);
        Ok(())
    }
}

/// Serve `vdi` as a vhost-user-blk device on the Unix socket `path`, one
/// QEMU at a time, until SIGINT or SIGTERM.
pub fn run(cfg: &Config, path: &str, vdi: &str) -> Result<(), CliError> {
    let t = Target::parse(vdi)?;
    let writable = !cfg.read_only && t.snapshot.is_none();
    let mut export = Export::open(
        t.display(),
        t.clone(),
        writable,
        writable && !cfg.no_lock,
        cfg,
    )?;
    let mut ready = Vec::new();
    let info = loop {
        export.pump()?;
        match &export.state {
            State::Open(info) => break *info,
            State::Failed(e) => return Err(e.clone()),
            _ => {}
        }
        let wait = export.next_wake().unwrap_or(Duration::from_secs(1));
        let _ = readiness::wait(&[export.want()], Some(wait), &mut ready);
        export.readable();
    };
    // Before the socket shows the device is up: a stop from then on is a
    // clean one (lock released, socket removed).
    signal::install();
    let _ = std::fs::remove_file(path);
    let mut listener = Listener::new(path, true)
        .map_err(|e| CliError::msg(format!("cannot listen on {path}: {e}")))?;
    if !cfg.quiet {
        eprintln!(
            "vhost-user-blk: {} on {path}: -chardev socket,id=c,path={path} -device vhost-user-blk-pci,chardev=c,num-queues=N (N up to {MAX_QUEUES}; guest memory shared)",
            t.display()
        );
    }
    let blk = Arc::new(RwLock::new(Blk {
        export,
        mem: GuestMemoryAtomic::new(GuestMemoryMmap::new()),
        event_idx: false,
        id: blk::device_id(&t.display()),
        size: info.size,
        object_size: info.object_size,
        writable,
        next_cookie: 0,
        spin: Spin::new(cfg.poll_max),
    }));
    while !signal::stop_requested() {
        // Wait for a front end where a stop is seen: accepting blocks.
        let want = [readiness::Want {
            fd: listener.as_raw_fd(),
            read: true,
            write: false,
        }];
        if readiness::wait_or_signal(&want, Some(Duration::from_millis(200)), &mut ready, true)
            .is_err()
            || !ready.first().is_some_and(|r| r.read)
        {
            continue;
        }
        let mut daemon = VhostUserDaemon::new(
            "sheep-tool vhost-user-blk".to_string(),
            blk.clone(),
            GuestMemoryAtomic::new(GuestMemoryMmap::new()),
        )
        .map_err(|e| CliError::msg(format!("vhost-user-blk: {e}")))?;
        daemon
            .start(&mut listener)
            .map_err(|e| CliError::msg(format!("vhost-user-blk: {e}")))?;
        // A stop ends the connection; the watcher ends with it.
        let over = Arc::new(AtomicBool::new(false));
        let watcher = daemon.shutdown_handle().map(|h| {
            let over = over.clone();
            thread::spawn(move || {
                while !over.load(Ordering::Relaxed) {
                    if signal::stop_requested() {
                        h.shutdown();
                        break;
                    }
                    thread::sleep(Duration::from_millis(100));
                }
            })
        });
        let res = daemon.wait();
        over.store(true, Ordering::Relaxed);
        if let Some(w) = watcher {
            let _ = w.join();
        }
        if let Err(e) = res {
            if !signal::stop_requested() && !cfg.quiet {
                eprintln!("vhost-user-blk: the front end left: {e}");
            }
        }
        if let Ok(mut b) = blk.write() {
            b.event_idx = false;
        }
    }
    let _ = std::fs::remove_file(path);
    let mut b = blk
        .write()
        .map_err(|_| CliError::msg("internal error: the device lock is poisoned"))?;
    b.export.close_now()
}
