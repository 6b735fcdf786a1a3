//! The cluster's status and history (STAT_CLUSTER 0x87, internal,
//! PROTOCOL.md §4.2): the reply's result is the status (SUCCESS while
//! running, WAIT_FOR_FORMAT, WAIT_FOR_JOIN, SHUTDOWN), and its payload the
//! epoch log, newest first: per epoch when it began and its nodes. The
//! newest record also carries the cluster's creation time, copies, policy,
//! flags and store driver. What `dog cluster info` prints.
//!
//! Each record is a 48-byte `struct epoch_log` and room for the
//! `nodes_nr` nodes the request offered (80-byte `struct sd_node`); sheep
//! answers BUFFER_SMALL when an epoch had more nodes than that, and the
//! caller asks again with more room.

use byteorder::{ByteOrder, LittleEndian};

use crate::nodes::{NodeList, NODE_ENTRY_LEN};
use crate::reply::{Accept, Conversation, Problem};
use crate::wire::{Request, Response};

/// Bytes of a record's header.
pub const RECORD_HEADER_LEN: usize = 48;
/// Cluster flag: VDI locking is on (`dog cluster format -l`).
pub const FLAG_USE_LOCK: u16 = 0x8;
/// Cluster flag: vnodes follow the nodes' space.
pub const FLAG_AUTO_VNODES: u16 = 0x4;
/// Cluster flag: vnodes per disk rather than per node.
pub const FLAG_DISKMODE: u16 = 0x2;

/// The bytes one record takes when the request offered room for
/// `nodes_nr` nodes.
pub const fn record_len(nodes_nr: u32) -> usize {
    RECORD_HEADER_LEN + nodes_nr as usize * NODE_ENTRY_LEN as usize
}

/// One epoch of the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Epoch<'a> {
    /// The cluster's creation time (`ctime`, seconds in the high 32 bits),
    /// in the newest record only (0 in the others).
    pub ctime: u64,
    /// When the epoch began (seconds since the epoch, UTC).
    pub time: u64,
    /// Its number.
    pub epoch: u32,
    /// Recovery is off (newest record only).
    pub disable_recovery: bool,
    /// The cluster's copies (newest record only).
    pub nr_copies: u8,
    /// The cluster's copy policy (newest record only).
    pub copy_policy: u8,
    /// The cluster's flags (newest record only).
    pub flags: u16,
    driver: &'a [u8],
    /// Its nodes.
    pub nodes: Option<NodeList<'a>>,
}

impl<'a> Epoch<'a> {
    /// The store driver's name (`plain`, `tree`), newest record only.
    pub fn driver(&self) -> &'a [u8] {
        crate::inode::trim_nul(self.driver)
    }
}

/// The records of a checked reply, newest first.
#[derive(Clone, Debug)]
pub struct EpochLog<'a> {
    records: core::slice::ChunksExact<'a, u8>,
}

impl<'a> EpochLog<'a> {
    /// The records of `payload`, each [`record_len`]`(nodes_nr)` bytes.
    pub fn parse(payload: &'a [u8], nodes_nr: u32) -> Result<EpochLog<'a>, Problem> {
        let len = record_len(nodes_nr);
        if payload.len() % len != 0 {
            return Err(Problem::Length {
                got: payload.len() as u32,
                expected: (payload.len() / len * len) as u32,
            });
        }
        Ok(EpochLog {
            records: payload.chunks_exact(len),
        })
    }
}

impl<'a> Iterator for EpochLog<'a> {
    type Item = Result<Epoch<'a>, Problem>;

    fn next(&mut self) -> Option<Self::Item> {
        let r = self.records.next()?;
        let nr_nodes = LittleEndian::read_u32(&r[20..24]);
        let epoch = LittleEndian::read_u32(&r[16..20]);
        let room = (r.len() - RECORD_HEADER_LEN) / NODE_ENTRY_LEN as usize;
        let nodes = match nr_nodes {
            0 => None,
            n if n as usize > room => {
                return Some(Err(Problem::Field {
                    name: "nr_nodes",
                    got: n.into(),
                    expected: room as u64,
                }))
            }
            n => {
                let end = RECORD_HEADER_LEN + n as usize * NODE_ENTRY_LEN as usize;
                match NodeList::parse(&r[RECORD_HEADER_LEN..end], n, epoch) {
                    Ok(list) => Some(list),
                    Err(e) => return Some(Err(e)),
                }
            }
        };
        Some(Ok(Epoch {
            ctime: LittleEndian::read_u64(&r[0..8]),
            time: LittleEndian::read_u64(&r[8..16]),
            epoch,
            disable_recovery: r[24] != 0,
            nr_copies: r[25],
            copy_policy: r[26],
            flags: LittleEndian::read_u16(&r[30..32]),
            driver: &r[32..48],
            nodes,
        }))
    }
}

/// STAT_CLUSTER as an [`Exchange`](crate::reply::Exchange)'s
/// conversation, offering room for `nodes_nr` nodes per epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatCluster {
    /// Room per record, in nodes.
    pub nodes_nr: u32,
    len: u32,
}

impl StatCluster {
    /// Ask with room for `nodes_nr` nodes per epoch.
    pub const fn new(nodes_nr: u32) -> StatCluster {
        StatCluster { nodes_nr, len: 0 }
    }
}

impl Conversation for StatCluster {
    type Outcome<'a> = EpochLog<'a>;

    fn request(&self, id: u32, buf_len: u32) -> Request {
        Request::stat_cluster(id, buf_len, self.nodes_nr)
    }

    fn accept(&mut self, _req: &Request, rsp: &Response) -> Result<Accept, Problem> {
        let len = rsp.data_length;
        let rec = record_len(self.nodes_nr) as u32;
        if len % rec != 0 {
            return Err(Problem::Length {
                got: len,
                expected: len / rec * rec,
            });
        }
        self.len = len;
        Ok(Accept::Payload(0..len as usize))
    }

    fn outcome<'a>(&self, buf: &'a [u8]) -> Result<EpochLog<'a>, Problem> {
        EpochLog::parse(
            buf.get(..self.len as usize).unwrap_or_default(),
            self.nodes_nr,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(epoch: u32, nodes: &[([u8; 4], u16, u16, u32)], room: u32) -> [u8; 48 + 3 * 80] {
        let mut r = [0u8; 48 + 3 * 80];
        assert_eq!(room, 3);
        r[0..8].copy_from_slice(&(1_700_000_000u64 << 32).to_le_bytes());
        r[8..16].copy_from_slice(&1_700_000_100u64.to_le_bytes());
        r[16..20].copy_from_slice(&epoch.to_le_bytes());
        r[20..24].copy_from_slice(&(nodes.len() as u32).to_le_bytes());
        r[25] = 3;
        r[30..32].copy_from_slice(&FLAG_USE_LOCK.to_le_bytes());
        r[32..37].copy_from_slice(b"plain");
        for (i, (ip, port, vnodes, zone)) in nodes.iter().enumerate() {
            let e = 48 + 80 * i;
            r[e + 36..e + 40].copy_from_slice(ip);
            r[e + 40..e + 42].copy_from_slice(&port.to_le_bytes());
            r[e + 64..e + 66].copy_from_slice(&vnodes.to_le_bytes());
            r[e + 68..e + 72].copy_from_slice(&zone.to_le_bytes());
        }
        r
    }

    #[test]
    fn records_give_their_nodes_newest_first() {
        let mut payload = [0u8; 2 * (48 + 3 * 80)];
        let two = [
            ([127, 0, 0, 1], 7000, 128, 0),
            ([127, 0, 0, 1], 7001, 64, 1),
        ];
        payload[..288].copy_from_slice(&record(2, &two, 3));
        payload[288..].copy_from_slice(&record(1, &two[..1], 3));
        let mut log = EpochLog::parse(&payload, 3).unwrap();
        let newest = log.next().unwrap().unwrap();
        assert_eq!(
            (newest.epoch, newest.nr_copies, newest.flags),
            (2, 3, FLAG_USE_LOCK)
        );
        assert_eq!(newest.driver(), b"plain");
        let nodes: heapless::Vec<_, 4> = newest.nodes.unwrap().iter().collect();
        assert_eq!(nodes[1].addr, "127.0.0.1:7001".parse().unwrap());
        assert_eq!((nodes[1].nr_vnodes, nodes[1].zone), (64, 1));
        assert_eq!(log.next().unwrap().unwrap().nodes.unwrap().len(), 1);
        assert!(log.next().is_none());
    }

    #[test]
    fn more_nodes_than_room_is_refused() {
        let mut r = record(1, &[], 3);
        r[20..24].copy_from_slice(&4u32.to_le_bytes());
        assert!(EpochLog::parse(&r, 3).unwrap().next().unwrap().is_err());
        assert!(EpochLog::parse(&r[..100], 3).is_err());
    }
}
