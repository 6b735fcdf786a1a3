//! [`Reply`], what [`Cluster::handle`](super::Cluster::handle) returns, and
//! `Outcome`, what an operation produces before it becomes one.

use sheepdog_core::wire::{Response, ResponseArgs, ResultCode};

use super::inode_io::Res;

/// A response: the header and exactly `header.data_length` payload bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The response header.
    pub header: Response,
    /// The payload.
    pub payload: Vec<u8>,
    /// Set by a disconnect fault: the TCP wrapper closes the connection
    /// instead of sending this reply.
    pub disconnect: bool,
    /// Set by a cut-short fault: the TCP wrapper sends the header and half
    /// the payload, then closes the connection.
    pub cut_short: bool,
}

impl Reply {
    /// The result code.
    pub fn result(&self) -> ResultCode {
        self.header.result
    }

    /// The VID of a VDI-op response.
    pub fn vdi_id(&self) -> Option<u32> {
        self.header.vdi_id()
    }

    /// Header and payload as they go on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.header.to_bytes().to_vec();
        out.extend_from_slice(&self.payload);
        out
    }
}

/// What an operation produced, before it becomes a [`Reply`].
#[derive(Debug)]
pub(super) struct Outcome {
    pub result: ResultCode,
    pub args: Option<ResponseArgs>,
    pub data: Vec<u8>,
}

impl Outcome {
    pub fn ok() -> Outcome {
        Outcome::err(ResultCode::Success)
    }

    pub fn err(result: ResultCode) -> Outcome {
        Outcome {
            result,
            args: None,
            data: Vec::new(),
        }
    }

    pub fn data(data: Vec<u8>) -> Outcome {
        Outcome {
            data,
            ..Outcome::ok()
        }
    }

    pub fn with_args(result: ResultCode, args: ResponseArgs, data: Vec<u8>) -> Outcome {
        Outcome {
            result,
            args: Some(args),
            data,
        }
    }

    pub fn vdi(result: ResultCode, vdi_id: u32, copies: u8, block_size_shift: u8) -> Outcome {
        let args = ResponseArgs::Vdi {
            rsvd: 0,
            vdi_id,
            attr_id: 0,
            copies,
            block_size_shift,
        };
        Outcome::with_args(result, args, Vec::new())
    }
}

impl From<Res<()>> for Outcome {
    fn from(r: Res<()>) -> Outcome {
        Outcome::err(r.err().unwrap_or(ResultCode::Success))
    }
}
