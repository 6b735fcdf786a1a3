//! The cluster's default copies, copy policy and object size
//! (GET_CLUSTER_DEFAULT, PROTOCOL.md §4.1): one request.

use super::super::{ControlDone, Engine, Error, Target};
use super::Next;
use crate::reply::check as reply;
use crate::wire::{Response, ResponseArgs};

impl<S: AsRef<[u8]> + AsMut<[u8]>, const N: usize> Engine<S, N> {
    pub(super) fn cluster_default_advance(&mut self, rsp: &Response) -> Next {
        let ResponseArgs::ClusterDefault {
            nr_copies,
            copy_policy,
            block_size_shift,
        } = rsp.args
        else {
            return Next::Fail(Error::UnexpectedReply { id: rsp.id });
        };
        match reply::cluster_default(nr_copies, block_size_shift) {
            Ok(()) => Next::Done(ControlDone::ClusterDefault {
                copies: nr_copies,
                copy_policy,
                block_size_shift,
            }),
            Err(p) => Next::Fail(Error::BadReply(
                self.asked_of_step(rsp, Target::Cluster).bad(p),
            )),
        }
    }
}
