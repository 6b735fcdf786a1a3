//! The objects each node stores (GET_OBJ_LIST, `core::obj_list`): the one
//! way to find objects whose ids cannot be derived, such as a VDI's
//! attributes.

use std::time::Duration;

use sheepdog_core::obj_list::GetObjList;
use sheepdog_core::oid::Oid;
use sheepdog_core::reply::Exchange;
use sheepdog_core::wire::ResultCode;

use super::gateways;
use super::raw::exchange;
use crate::error::{self, CliError};

/// The first GET_OBJ_LIST buffer, and the largest: 1 Mi and 64 Mi oids.
const OBJ_LIST_FIRST: usize = 8 << 20;
const OBJ_LIST_MAX: usize = 512 << 20;

/// The oids the node at `addr` stores, asked on a connection of its own;
/// a list that does not fit is asked for again with a larger buffer.
pub fn of_node(addr: &str, timeout: Duration) -> Result<Vec<Oid>, CliError> {
    let d = gateways::dial(addr, timeout, timeout).map_err(|r| {
        CliError::msg(format!(
            "cannot list the objects of {}: {}",
            r.addr, r.reason
        ))
    })?;
    let mut stream = d.stream;
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(timeout));
    let mut len = OBJ_LIST_FIRST;
    loop {
        let mut list = Exchange::new(vec![0u8; len], 1, GetObjList::default());
        exchange(&mut stream, &d.addr, &mut list)?;
        if list.refused_with(ResultCode::BufferSmall) && len < OBJ_LIST_MAX {
            len *= 4;
            continue;
        }
        return match list.outcome() {
            Some(Ok(oids)) => Ok(oids.collect()),
            Some(Err(e)) => Err(error::engine(&format!("the object list of {}", d.addr), e)),
            None => Err(CliError::msg(format!(
                "{} did not send its object list",
                d.addr
            ))),
        };
    }
}
