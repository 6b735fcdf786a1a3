//! The cluster's status and epoch history (STAT_CLUSTER,
//! `core::epoch_log`): what `dog cluster info` prints.

use std::net::SocketAddr;

use sheepdog_core::epoch_log::{record_len, StatCluster};
use sheepdog_core::reply::Exchange;
use sheepdog_core::wire::ResultCode;

use super::client::Client;
use super::raw;
use crate::error::{self, CliError};

/// One epoch.
#[derive(Clone, Debug)]
pub struct Epoch {
    /// Its number.
    pub epoch: u32,
    /// When it began (seconds, UTC).
    pub time: u64,
    /// Its nodes and their vnodes.
    pub nodes: Vec<(SocketAddr, u16)>,
}

/// The cluster's state.
#[derive(Clone, Debug)]
pub struct Status {
    /// SUCCESS while running; else what it waits for.
    pub status: ResultCode,
    /// Creation time (seconds).
    pub created: u64,
    /// Copies.
    pub nr_copies: u8,
    /// Copy policy.
    pub copy_policy: u8,
    /// Flags (locking, vnodes strategy, disk mode).
    pub flags: u16,
    /// Recovery is off.
    pub disable_recovery: bool,
    /// The store driver.
    pub driver: String,
    /// The epochs, newest first.
    pub epochs: Vec<Epoch>,
}

impl Status {
    /// A status with nothing known but `status`.
    fn empty(status: ResultCode) -> Status {
        Status {
            status,
            created: 0,
            nr_copies: 0,
            copy_policy: 0,
            flags: 0,
            disable_recovery: false,
            driver: String::new(),
            epochs: Vec::new(),
        }
    }
}

/// Ask the node `client` is connected to, at `epoch` with `nodes`
/// nodes: room for that many epochs of that many nodes, more when sheep
/// says it does not fit.
pub fn status(client: &mut Client, epoch: u32, nodes: u32) -> Result<Status, CliError> {
    let mut nodes_nr = nodes.max(1);
    loop {
        let len = record_len(nodes_nr) * epoch.max(1) as usize;
        let mut ex = Exchange::new(vec![0u8; len], 1, StatCluster::new(nodes_nr));
        raw::on_client(client, &mut ex)?;
        if ex.refused_with(ResultCode::BufferSmall) && nodes_nr < 6144 {
            nodes_nr *= 2;
            continue;
        }
        for waiting in [
            ResultCode::WaitForFormat,
            ResultCode::WaitForJoin,
            ResultCode::Shutdown,
        ] {
            if ex.refused_with(waiting) {
                return Ok(Status::empty(waiting));
            }
        }
        let log = match ex.outcome() {
            Some(Ok(log)) => log,
            Some(Err(e)) => return Err(error::engine("the cluster's status", e)),
            None => return Err(CliError::msg("internal error: no reply")),
        };
        let mut s = Status::empty(ResultCode::Success);
        for (i, e) in log.enumerate() {
            let e =
                e.map_err(|p| CliError::msg(format!("the cluster's epoch log is malformed: {p}")))?;
            if i == 0 {
                s.created = e.ctime >> 32;
                s.nr_copies = e.nr_copies;
                s.copy_policy = e.copy_policy;
                s.flags = e.flags;
                s.disable_recovery = e.disable_recovery;
                s.driver = String::from_utf8_lossy(e.driver()).into_owned();
            }
            s.epochs.push(Epoch {
                epoch: e.epoch,
                time: e.time,
                nodes: e
                    .nodes
                    .map(|l| l.iter().map(|n| (n.addr, n.nr_vnodes)).collect())
                    .unwrap_or_default(),
            });
        }
        return Ok(s);
    }
}
