//! One request on one object named by its oid, outside any VDI's index:
//! the vmstate objects of a snapshot (PROTOCOL.md §9.9), and the objects a
//! client removes itself. [`ObjectOp`] is the conversation of an
//! [`Exchange`](crate::reply::Exchange): the request, its payload from the
//! caller's buffer, the reply through the one receive path into that
//! buffer, checked (a read must return exactly what it asked for), then
//! the outcome.

use crate::oid::Oid;
use crate::reply::{Accept, Conversation, Next, Problem, Want};
use crate::wire::{Request, Response};

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

/// One request on one object, as an [`Exchange`](crate::reply::Exchange)'s
/// conversation: the buffer is what a create or write sends and where a
/// read lands, whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectOp {
    /// The object.
    pub oid: Oid,
    /// What is done to it.
    pub kind: ObjectKind,
}

impl ObjectOp {
    /// `kind` on `oid`.
    pub const fn new(oid: Oid, kind: ObjectKind) -> ObjectOp {
        ObjectOp { oid, kind }
    }
}

impl Conversation for ObjectOp {
    type Outcome<'a> = ();

    fn request(&self, id: u32, len: u32) -> Request {
        match self.kind {
            ObjectKind::Read { offset } => Request::read_obj(id, self.oid, offset, len),
            ObjectKind::Create { offset, copies } => {
                Request::create_and_write(id, self.oid, None, offset, len, copies)
            }
            ObjectKind::Write { offset, copies } => {
                Request::write_obj(id, self.oid, offset, len, copies)
            }
            ObjectKind::Remove { copies } => Request::remove_obj(id, self.oid, copies),
        }
    }

    fn want(&self, req: &Request) -> Want {
        match self.kind {
            // A read returns exactly what it asked for.
            ObjectKind::Read { .. } => Want::Exact(req.data_length),
            _ => Want::Ignored,
        }
    }

    fn accept(&mut self, _req: &Request, rsp: &Response) -> Result<Accept, Problem> {
        Ok(match self.kind {
            ObjectKind::Read { .. } => Accept::Payload(0..rsp.data_length as usize),
            _ => Accept::Skip(Next::Done),
        })
    }

    fn outcome(&self, _buf: &[u8]) -> Result<(), Problem> {
        Ok(())
    }
}
