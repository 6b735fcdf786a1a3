//! The objects one node stores (GET_OBJ_LIST 0xA1, internal): what sheep's
//! recovery asks its peers, and the one way to find objects whose ids
//! cannot be derived, such as a VDI's attributes (their slots come from
//! hashing keys the client may not know).
//!
//! [`GetObjList`] is the conversation of an
//! [`Exchange`](crate::reply::Exchange): one request, the reply through
//! the one receive path into the caller's buffer, checked (a whole number
//! of u64 oids, within the buffer), then the oids. sheep answers
//! BUFFER_SMALL when its list does not fit (the exchange is
//! `refused_with(ResultCode::BufferSmall)`), and the caller asks again
//! with a larger buffer.

use byteorder::{ByteOrder, LittleEndian};

use crate::oid::Oid;
use crate::reply::{Accept, Conversation, Problem};
use crate::wire::{Request, Response};

/// GET_OBJ_LIST as an [`Exchange`](crate::reply::Exchange)'s
/// conversation; see the module docs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GetObjList {
    /// Payload bytes of the reply.
    len: u32,
}

impl Conversation for GetObjList {
    type Outcome<'a> = Oids<'a>;

    fn request(&self, id: u32, buf_len: u32) -> Request {
        Request::get_obj_list(id, buf_len)
    }

    fn accept(&mut self, _req: &Request, rsp: &Response) -> Result<Accept, Problem> {
        let len = rsp.data_length;
        if len % 8 != 0 {
            return Err(Problem::Length {
                got: len,
                expected: len / 8 * 8,
            });
        }
        self.len = len;
        Ok(Accept::Payload(0..len as usize))
    }

    fn outcome<'a>(&self, buf: &'a [u8]) -> Result<Oids<'a>, Problem> {
        let bytes = buf.get(..self.len as usize).unwrap_or_default();
        Ok(Oids(bytes.chunks_exact(8)))
    }
}

/// The oids of a node's list, in its order.
#[derive(Clone, Debug)]
pub struct Oids<'a>(core::slice::ChunksExact<'a, u8>);

impl Iterator for Oids<'_> {
    type Item = Oid;

    fn next(&mut self) -> Option<Oid> {
        self.0.next().map(|c| Oid(LittleEndian::read_u64(c)))
    }
}
