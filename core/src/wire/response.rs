//! Response headers: a parse/emit representation (PROTOCOL.md §2.4).

use super::frame::{field, Frame};
use super::{ArgsKind, Opcode, ResultCode};
use crate::error::DecodeError;

/// Length of the SHA-1 digest a GET_HASH reply carries.
pub const DIGEST_LEN: usize = 20;

/// The op-specific part of a response header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseArgs {
    /// Object I/O.
    Obj {
        /// `copies`, not set by v1.0.
        copies: u8,
        /// Legacy trimmed-read offset, always 0.
        offset: u64,
    },
    /// VDI operations.
    Vdi {
        /// Reserved.
        rsvd: u32,
        /// The VID that the operation resolved or created.
        vdi_id: u32,
        /// GET_VDI_ATTR: the attribute slot.
        attr_id: u32,
        /// The VDI's effective copies.
        copies: u8,
        /// The VDI's object size shift.
        block_size_shift: u8,
    },
    /// GET_CLUSTER_DEFAULT.
    ClusterDefault {
        /// Default copies.
        nr_copies: u8,
        /// Default copy policy.
        copy_policy: u8,
        /// Default object size shift.
        block_size_shift: u8,
    },
    /// Any other operation: bytes 20..48 as they are.
    Raw([u8; 28]),
}

/// A response header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    /// Not filled in by v1.0 (0); not to be validated.
    pub proto_ver: u8,
    /// Copy of the request's opcode.
    pub opcode: Opcode,
    /// 0 in practice.
    pub flags: u16,
    /// The gateway's epoch.
    pub epoch: u32,
    /// Copy of the request's id.
    pub id: u32,
    /// How many payload bytes follow, whatever the result.
    pub data_length: u32,
    /// The outcome.
    pub result: ResultCode,
    /// The op-specific part.
    pub args: ResponseArgs,
}

impl Response {
    /// Parse a response header. Never fails once the frame holds 48 bytes.
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Response {
        let opcode = Opcode::from_u8(frame.opcode());
        let args = match opcode.reply_args_kind() {
            ArgsKind::Obj => ResponseArgs::Obj {
                copies: frame.u8_at(field::rsp::OBJ_COPIES),
                offset: frame.u64_at(field::rsp::OBJ_OFFSET.start),
            },
            ArgsKind::Vdi => ResponseArgs::Vdi {
                rsvd: frame.u32_at(field::rsp::VDI_RSVD.start),
                vdi_id: frame.u32_at(field::rsp::VDI_ID.start),
                attr_id: frame.u32_at(field::rsp::ATTR_ID.start),
                copies: frame.u8_at(field::rsp::VDI_COPIES),
                block_size_shift: frame.u8_at(field::rsp::VDI_BLOCK_SIZE_SHIFT),
            },
            ArgsKind::ClusterDefault => ResponseArgs::ClusterDefault {
                nr_copies: frame.u8_at(field::rsp::DEFAULT_COPIES),
                copy_policy: frame.u8_at(field::rsp::DEFAULT_COPY_POLICY),
                block_size_shift: frame.u8_at(field::rsp::DEFAULT_BLOCK_SIZE_SHIFT),
            },
            ArgsKind::Empty | ArgsKind::Raw => {
                let mut raw = [0u8; 28];
                raw.copy_from_slice(&frame.header()[field::rsp::ARGS]);
                ResponseArgs::Raw(raw)
            }
        };
        Response {
            proto_ver: frame.proto_ver(),
            opcode,
            flags: frame.flags(),
            epoch: frame.epoch(),
            id: frame.id(),
            data_length: frame.data_length(),
            result: ResultCode::from_u32(frame.result()),
            args,
        }
    }

    /// Parse the first 48 bytes of `bytes`.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Response, DecodeError> {
        Ok(Response::parse(&Frame::new_checked(bytes)?))
    }

    /// Write the header into a frame, zeroing every byte no field names.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut Frame<T>) {
        frame.clear();
        frame.set_u8_at(field::PROTO_VER, self.proto_ver);
        frame.set_u8_at(field::OPCODE, self.opcode.to_u8());
        frame.set_u16_at(field::FLAGS.start, self.flags);
        frame.set_u32_at(field::EPOCH.start, self.epoch);
        frame.set_u32_at(field::ID.start, self.id);
        frame.set_u32_at(field::DATA_LENGTH.start, self.data_length);
        frame.set_u32_at(field::rsp::RESULT.start, self.result.to_u32());
        match self.args {
            ResponseArgs::Obj { copies, offset } => {
                frame.set_u8_at(field::rsp::OBJ_COPIES, copies);
                frame.set_u64_at(field::rsp::OBJ_OFFSET.start, offset);
            }
            ResponseArgs::Vdi {
                rsvd,
                vdi_id,
                attr_id,
                copies,
                block_size_shift,
            } => {
                frame.set_u32_at(field::rsp::VDI_RSVD.start, rsvd);
                frame.set_u32_at(field::rsp::VDI_ID.start, vdi_id);
                frame.set_u32_at(field::rsp::ATTR_ID.start, attr_id);
                frame.set_u8_at(field::rsp::VDI_COPIES, copies);
                frame.set_u8_at(field::rsp::VDI_BLOCK_SIZE_SHIFT, block_size_shift);
            }
            ResponseArgs::ClusterDefault {
                nr_copies,
                copy_policy,
                block_size_shift,
            } => {
                frame.set_u8_at(field::rsp::DEFAULT_COPIES, nr_copies);
                frame.set_u8_at(field::rsp::DEFAULT_COPY_POLICY, copy_policy);
                frame.set_u8_at(field::rsp::DEFAULT_BLOCK_SIZE_SHIFT, block_size_shift);
            }
            ResponseArgs::Raw(raw) => frame.set_bytes_at(field::rsp::ARGS.start, &raw),
        }
    }

    /// The header as an array.
    pub fn to_bytes(&self) -> [u8; super::HEADER_LEN] {
        let mut out = [0u8; super::HEADER_LEN];
        let mut frame = Frame::new_checked(&mut out[..]).expect("48 bytes");
        self.emit(&mut frame);
        out
    }

    /// A response to `request` with `result`, no payload and default
    /// arguments for its opcode; for servers and tests.
    pub fn to_request(request: &super::Request, result: ResultCode, data_length: u32) -> Response {
        let args = match request.opcode.reply_args_kind() {
            ArgsKind::Obj => ResponseArgs::Obj {
                copies: 0,
                offset: 0,
            },
            ArgsKind::Vdi => ResponseArgs::Vdi {
                rsvd: 0,
                vdi_id: 0,
                attr_id: 0,
                copies: 0,
                block_size_shift: 0,
            },
            ArgsKind::ClusterDefault => ResponseArgs::ClusterDefault {
                nr_copies: 0,
                copy_policy: 0,
                block_size_shift: 0,
            },
            ArgsKind::Empty | ArgsKind::Raw => ResponseArgs::Raw([0; 28]),
        };
        Response {
            proto_ver: 0,
            opcode: request.opcode,
            flags: 0,
            epoch: 0,
            id: request.id,
            data_length,
            result,
            args,
        }
    }

    /// The SHA-1 digest of a GET_HASH reply (`rsp.hash.digest`, bytes
    /// 24..44 of the header).
    pub fn digest(&self) -> Option<[u8; DIGEST_LEN]> {
        match (self.opcode, self.args) {
            (Opcode::GetHash, ResponseArgs::Raw(raw)) => {
                let mut digest = [0u8; DIGEST_LEN];
                digest.copy_from_slice(&raw[4..4 + DIGEST_LEN]);
                Some(digest)
            }
            _ => None,
        }
    }

    /// The VID of a VDI-op response.
    pub fn vdi_id(&self) -> Option<u32> {
        match self.args {
            ResponseArgs::Vdi { vdi_id, .. } => Some(vdi_id),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    //! Golden replies from the recorded `dog` conversations.
    use super::*;
    use crate::wire::{Opcode, Request};

    fn golden(hex: &str) -> [u8; crate::wire::HEADER_LEN] {
        let mut b = [0u8; crate::wire::HEADER_LEN];
        for (i, byte) in b.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
        }
        b
    }

    #[test]
    fn lookup_reply_names_the_vid_and_its_geometry() {
        // 03_vdi_write_off0: GET_VDI_INFO found VID 0x6acfef, 3 copies,
        // 4 MiB objects.
        let b = golden("001400000100000000000000000000000000000000000000efcf6a000000000003160000000000000000000000000000");
        let rsp = Response::parse_bytes(&b).unwrap();
        assert_eq!(rsp.opcode, Opcode::GetVdiInfo);
        assert_eq!((rsp.epoch, rsp.data_length), (1, 0));
        assert!(rsp.result.is_success());
        assert_eq!(rsp.vdi_id(), Some(0x6a_cfef));
        match rsp.args {
            ResponseArgs::Vdi {
                copies,
                block_size_shift,
                ..
            } => assert_eq!((copies, block_size_shift), (3, 22)),
            other => panic!("{other:?}"),
        }
        assert_eq!(rsp.to_bytes(), b);
    }

    #[test]
    fn read_reply_carries_its_length() {
        // 05_vdi_read_off0: the whole inode comes back.
        let b = golden("0002000001000000000000003812c0000000000000000000000000000000000000000000000000000000000000000000");
        let rsp = Response::parse_bytes(&b).unwrap();
        assert_eq!((rsp.opcode, rsp.data_length), (Opcode::ReadObj, 12_587_576));
        assert_eq!(rsp.vdi_id(), None);
        assert_eq!(rsp.to_bytes(), b);
    }

    #[test]
    fn a_reply_made_for_a_request_echoes_it() {
        let req = Request::read_obj(77, crate::oid::Oid(5), 0, 4096);
        let rsp = Response::to_request(&req, ResultCode::NoObj, 0);
        let back = Response::parse_bytes(&rsp.to_bytes()).unwrap();
        assert_eq!((back.id, back.opcode), (77, Opcode::ReadObj));
        assert_eq!(back.result, ResultCode::NoObj);
        assert!(Response::parse_bytes(&[0u8; 20]).is_err());
    }
}
