//! The objects one node stores (GET_OBJ_LIST 0xA1, internal): what sheep's
//! recovery asks its peers, and the one way to find objects whose ids
//! cannot be derived, such as a VDI's attributes (their slots come from
//! hashing keys the client may not know).
//!
//! An [`ObjListProbe`] is sans-IO like [`crate::nodes::NodeProbe`]: one
//! request, the reply through the one receive path into the caller's
//! buffer, checked (a whole number of u64 oids, within the buffer), then
//! the oids. sheep answers BUFFER_SMALL when its list does not fit:
//! [`ObjListProbe::too_small`] says so, and the caller asks again with a
//! larger buffer.

use byteorder::{ByteOrder, LittleEndian};

use crate::engine::reply::{self, Asked, Want};
use crate::engine::{Error, Incoming, Problem, Receive};
use crate::oid::Oid;
use crate::receive::Replies;
use crate::wire::{Request, ResultCode, HEADER_LEN};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Asking,
    Reading(u32),
    Done(u32),
    Failed(Error),
}

/// Asks one node for its objects; see the module docs.
#[derive(Debug)]
pub struct ObjListProbe<B> {
    buf: B,
    id: u32,
    state: State,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> ObjListProbe<B> {
    /// A probe whose reply goes into `buf`, with request id `id`.
    pub fn new(buf: B, id: u32) -> ObjListProbe<B> {
        ObjListProbe {
            buf,
            id,
            state: State::Asking,
        }
    }

    fn asked(&self) -> Request {
        Request::get_obj_list(
            self.id,
            self.buf.as_ref().len().min(u32::MAX as usize) as u32,
        )
    }

    /// The request to send.
    pub fn request(&self) -> [u8; HEADER_LEN] {
        self.asked().to_bytes()
    }

    /// A reply header arrived: where its payload goes. An error means the
    /// connection is out of step: drop it without reading the payload.
    pub fn handle_header(&mut self, header: &[u8]) -> Result<Incoming, Error> {
        let waiting = self.state == State::Asking;
        let rsp = match reply::screen(header, waiting, &self.asked(), Want::Ignored) {
            Ok(rsp) => rsp,
            Err(r) => return r.settle(|e| self.state = State::Failed(e)),
        };
        let asked = Asked::of(&self.asked());
        let len = rsp.data_length;
        if len % 8 != 0 {
            let e = Error::BadReply(asked.bad(Problem::Length {
                got: len,
                expected: len / 8 * 8,
            }));
            self.state = State::Failed(e);
            return Ok(Incoming {
                len,
                into: Receive::Discard,
            });
        }
        self.state = State::Reading(len);
        Ok(Incoming {
            len,
            into: Receive::Own(0..len as usize),
        })
    }

    /// The payload is in the buffer.
    pub fn handle_payload(&mut self) {
        if let State::Reading(len) = self.state {
            self.state = State::Done(len);
        }
    }

    /// Whether the node's list did not fit (BUFFER_SMALL): ask again with
    /// a larger buffer.
    pub fn too_small(&self) -> bool {
        matches!(
            self.state,
            State::Failed(Error::Server {
                result: ResultCode::BufferSmall,
                ..
            })
        )
    }

    /// The outcome once the reply is in: the node's oids, or why not.
    pub fn outcome(&self) -> Option<Result<impl Iterator<Item = Oid> + '_, Error>> {
        match self.state {
            State::Asking | State::Reading(_) => None,
            State::Failed(e) => Some(Err(e)),
            State::Done(len) => Some(Ok(self.buf.as_ref()[..len as usize]
                .chunks_exact(8)
                .map(|c| Oid(LittleEndian::read_u64(c))))),
        }
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Replies for ObjListProbe<B> {
    fn handle_header(&mut self, header: &[u8]) -> Result<Incoming, Error> {
        ObjListProbe::handle_header(self, header)
    }
    fn handle_payload(&mut self, _now: u64, _scratch: &[u8]) {
        ObjListProbe::handle_payload(self)
    }
    fn own_bytes_mut(&mut self) -> &mut [u8] {
        self.buf.as_mut()
    }
}
