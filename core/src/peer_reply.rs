//! A node's reply about its own copy of an object (PROTOCOL.md §4.3):
//! GET_HASH, READ_PEER, CREATE_AND_WRITE_PEER, WRITE_PEER, REMOVE_PEER,
//! REPAIR_REPLICA. Many are in flight on one connection and come back in
//! any order, so the caller matches a reply to its request by id; this
//! checks the reply against that request before it is believed: the same
//! opcode, no more payload than the request allows (exactly what a read
//! asked for when it succeeded, none otherwise), and what it says.

use crate::reply::Problem;
use crate::verdict::Digest;
use crate::wire::{Request, Response, ResultCode};

/// What a checked reply says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerReply {
    /// GET_HASH: the copy's SHA-1.
    Hash(Digest),
    /// READ_PEER: the copy's bytes follow, `data_length` of them.
    Data(u32),
    /// A write, repair or remove was done.
    Done,
    /// The node refused with this result; `data_length` bytes follow and
    /// are dropped.
    Refused(ResultCode, u32),
}

/// Check `rsp`, the reply to `req` (one of the requests above).
pub fn check(req: &Request, rsp: &Response) -> Result<PeerReply, Problem> {
    if rsp.opcode != req.opcode {
        return Err(Problem::Opcode {
            got: rsp.opcode.to_u8(),
        });
    }
    let reads = req.opcode == crate::wire::Opcode::ReadPeer;
    let most = if reads { req.data_length } else { 0 };
    if rsp.data_length > most {
        return Err(Problem::TooLong {
            got: rsp.data_length,
            max: most,
        });
    }
    if !rsp.result.is_success() {
        return Ok(PeerReply::Refused(rsp.result, rsp.data_length));
    }
    if reads {
        if rsp.data_length != req.data_length {
            return Err(Problem::Length {
                got: rsp.data_length,
                expected: req.data_length,
            });
        }
        return Ok(PeerReply::Data(rsp.data_length));
    }
    Ok(match rsp.digest() {
        Some(d) => PeerReply::Hash(d),
        None => PeerReply::Done,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oid::Oid;

    fn reply(req: &Request, result: ResultCode, len: u32) -> Response {
        Response::to_request(req, result, len)
    }

    #[test]
    fn a_read_must_bring_what_it_asked_for() {
        let req = Request::read_peer(3, Oid(1), 0, 4096, 1);
        assert_eq!(
            check(&req, &reply(&req, ResultCode::Success, 4096)),
            Ok(PeerReply::Data(4096))
        );
        assert!(check(&req, &reply(&req, ResultCode::Success, 512)).is_err());
        assert!(check(&req, &reply(&req, ResultCode::Success, 8192)).is_err());
        assert_eq!(
            check(&req, &reply(&req, ResultCode::NoObj, 0)),
            Ok(PeerReply::Refused(ResultCode::NoObj, 0))
        );
    }

    #[test]
    fn a_hash_gives_its_digest_and_nothing_else_may_follow() {
        let req = Request::get_hash(1, Oid(1), 1);
        let mut rsp = reply(&req, ResultCode::Success, 0);
        rsp.args = crate::wire::ResponseArgs::Raw([7; 28]);
        assert_eq!(check(&req, &rsp), Ok(PeerReply::Hash([7; 20])));
        assert!(check(&req, &reply(&req, ResultCode::Success, 1)).is_err());
        let write = Request::create_and_write_peer(2, Oid(1), 0, 512, 1);
        assert_eq!(
            check(&write, &reply(&write, ResultCode::Success, 0)),
            Ok(PeerReply::Done)
        );
        assert!(
            check(&write, &reply(&req, ResultCode::Success, 0)).is_err(),
            "another opcode"
        );
    }
}
