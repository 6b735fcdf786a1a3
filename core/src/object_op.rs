//! One request on one object named by its oid, outside any VDI's index:
//! the vmstate objects of a snapshot (PROTOCOL.md §9.9), and the objects a
//! client removes itself. Sans-IO like [`crate::nodes::NodeProbe`]: the
//! request, its payload from the caller's buffer, the reply through the
//! one receive path into that buffer, checked (a read must return exactly
//! what it asked for), then the outcome.

use crate::engine::reply::{self, Want};
use crate::engine::{Error, Incoming, Receive};
use crate::oid::Oid;
use crate::receive::Replies;
use crate::wire::{Request, HEADER_LEN};

/// What an [`ObjectOp`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    /// READ_OBJ of the buffer's length at `offset`.
    Read {
        /// Where in the object.
        offset: u32,
    },
    /// CREATE_AND_WRITE_OBJ of the buffer at `offset` (the rest of the
    /// object is zeros).
    Create {
        /// Where in the object.
        offset: u32,
        /// Copies (0: the VDI's own).
        copies: u8,
    },
    /// WRITE_OBJ of the buffer at `offset` in an existing object.
    Write {
        /// Where in the object.
        offset: u32,
        /// Copies (0: the VDI's own).
        copies: u8,
    },
    /// REMOVE_OBJ (the buffer is not used).
    Remove {
        /// Copies to remove (0: the VDI's own).
        copies: u8,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Asking,
    Reading,
    Done,
    Failed(Error),
}

/// One request on one object; see the module docs.
#[derive(Debug)]
pub struct ObjectOp<B> {
    buf: B,
    id: u32,
    oid: Oid,
    kind: ObjectKind,
    state: State,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> ObjectOp<B> {
    /// `kind` on `oid` over `buf` (what a write sends, where a read lands),
    /// with request id `id`.
    pub fn new(buf: B, id: u32, oid: Oid, kind: ObjectKind) -> ObjectOp<B> {
        ObjectOp {
            buf,
            id,
            oid,
            kind,
            state: State::Asking,
        }
    }

    fn asked(&self) -> Request {
        let len = self.buf.as_ref().len().min(u32::MAX as usize) as u32;
        match self.kind {
            ObjectKind::Read { offset } => Request::read_obj(self.id, self.oid, offset, len),
            ObjectKind::Create { offset, copies } => {
                Request::create_and_write(self.id, self.oid, None, offset, len, copies)
            }
            ObjectKind::Write { offset, copies } => {
                Request::write_obj(self.id, self.oid, offset, len, copies)
            }
            ObjectKind::Remove { copies } => Request::remove_obj(self.id, self.oid, copies),
        }
    }

    /// The request header; for a create or write, [`ObjectOp::payload`]
    /// follows it.
    pub fn request(&self) -> [u8; HEADER_LEN] {
        self.asked().to_bytes()
    }

    /// What follows the header (empty for a read or remove).
    pub fn payload(&self) -> &[u8] {
        match self.kind {
            ObjectKind::Create { .. } | ObjectKind::Write { .. } => self.buf.as_ref(),
            _ => &[],
        }
    }

    /// A reply header arrived: where its payload goes. An error means the
    /// connection is out of step: drop it without reading the payload.
    pub fn handle_header(&mut self, header: &[u8]) -> Result<Incoming, Error> {
        let req = self.asked();
        let read = matches!(self.kind, ObjectKind::Read { .. });
        let want = if read {
            Want::Exact(req.data_length)
        } else {
            Want::Ignored
        };
        let rsp = match reply::screen(header, self.state == State::Asking, &req, want) {
            Ok(rsp) => rsp,
            Err(r) => return r.settle(|e| self.state = State::Failed(e)),
        };
        let discard = Incoming {
            len: rsp.data_length,
            into: Receive::Discard,
        };
        if read {
            self.state = State::Reading;
            return Ok(Incoming {
                len: rsp.data_length,
                into: Receive::Own(0..rsp.data_length as usize),
            });
        }
        self.state = State::Done;
        Ok(discard)
    }

    /// The payload is in the buffer.
    pub fn handle_payload(&mut self) {
        if self.state == State::Reading {
            self.state = State::Done;
        }
    }

    /// The outcome once the reply is in.
    pub fn outcome(&self) -> Option<Result<(), Error>> {
        match self.state {
            State::Asking | State::Reading => None,
            State::Done => Some(Ok(())),
            State::Failed(e) => Some(Err(e)),
        }
    }

    /// The buffer: what a read returned.
    pub fn buf(&self) -> &[u8] {
        self.buf.as_ref()
    }

    /// The buffer back.
    pub fn into_buf(self) -> B {
        self.buf
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Replies for ObjectOp<B> {
    fn handle_header(&mut self, header: &[u8]) -> Result<Incoming, Error> {
        ObjectOp::handle_header(self, header)
    }
    fn handle_payload(&mut self, _now: u64, _scratch: &[u8]) {
        ObjectOp::handle_payload(self)
    }
    fn own_bytes_mut(&mut self) -> &mut [u8] {
        self.buf.as_mut()
    }
}
