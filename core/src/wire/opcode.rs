//! Operation codes (PROTOCOL.md §4).

use core::fmt;

/// The operation a request asks for. Codes this crate does not know are kept
/// as [`Opcode::Unknown`] so that a decoder never fails on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Opcode {
    /// 0x01: create an object (optionally copy-on-write) and write into it.
    CreateAndWriteObj,
    /// 0x02: read bytes of an object.
    ReadObj,
    /// 0x03: write bytes into an existing object.
    WriteObj,
    /// 0x04: remove an object (internal; bypasses reference counting).
    RemoveObj,
    /// 0x05: discard a data object by clearing its index entry.
    DiscardObj,
    /// 0x11: create a VDI, snapshot, clone or rebase.
    NewVdi,
    /// 0x12: look a VDI up and lock it.
    LockVdi,
    /// 0x13: release a VDI lock.
    ReleaseVdi,
    /// 0x14: look a VDI up by name, tag or snapshot id.
    GetVdiInfo,
    /// 0x15: read the 2 MiB bitmap of VIDs in use.
    ReadVdis,
    /// 0x16: obsolete flush; always answered with INVALID_PARMS.
    FlushVdi,
    /// 0x17: delete a VDI or snapshot (after its index was zeroed).
    DelVdi,
    /// 0x18: read the cluster's default copies, policy and object size.
    GetClusterDefault,
    /// 0x82: internal, list the cluster's nodes.
    GetNodeList,
    /// 0x86: internal, a node's store size and free space.
    StatSheep,
    /// 0x87: internal, cluster status and epoch log.
    StatCluster,
    /// 0x89: internal, get, set or delete a VDI attribute.
    GetVdiAttr,
    /// 0xA1: internal, the objects a node stores.
    GetObjList,
    /// 0xA3: peer, create one copy (or strip) on this node.
    CreateAndWritePeer,
    /// 0xA4: peer, read this node's copy (or strip).
    ReadPeer,
    /// 0xA5: peer, write into this node's copy (or strip).
    WritePeer,
    /// 0xA6: peer, remove this node's copy (or strip).
    RemovePeer,
    /// 0xAB: internal, the table of VDI states (copies, locks).
    GetVdiCopies,
    /// 0xB4: internal, the SHA-1 of this node's copy of an object.
    GetHash,
    /// 0xBE: internal, cluster information.
    ClusterInfo,
    /// 0xC5: internal, this node copies an object from another node.
    RepairReplica,
    /// 0xC9: internal, read the 2 MiB bitmap of deleted VIDs.
    ReadDelVdis,
    /// Any other code, kept as sent.
    Unknown(u8),
}

impl Opcode {
    /// The opcode for a wire byte.
    pub const fn from_u8(code: u8) -> Opcode {
        match code {
            0x01 => Opcode::CreateAndWriteObj,
            0x02 => Opcode::ReadObj,
            0x03 => Opcode::WriteObj,
            0x04 => Opcode::RemoveObj,
            0x05 => Opcode::DiscardObj,
            0x11 => Opcode::NewVdi,
            0x12 => Opcode::LockVdi,
            0x13 => Opcode::ReleaseVdi,
            0x14 => Opcode::GetVdiInfo,
            0x15 => Opcode::ReadVdis,
            0x16 => Opcode::FlushVdi,
            0x17 => Opcode::DelVdi,
            0x18 => Opcode::GetClusterDefault,
            0x82 => Opcode::GetNodeList,
            0x86 => Opcode::StatSheep,
            0x87 => Opcode::StatCluster,
            0x89 => Opcode::GetVdiAttr,
            0xA1 => Opcode::GetObjList,
            0xA3 => Opcode::CreateAndWritePeer,
            0xA4 => Opcode::ReadPeer,
            0xA5 => Opcode::WritePeer,
            0xA6 => Opcode::RemovePeer,
            0xAB => Opcode::GetVdiCopies,
            0xB4 => Opcode::GetHash,
            0xBE => Opcode::ClusterInfo,
            0xC5 => Opcode::RepairReplica,
            0xC9 => Opcode::ReadDelVdis,
            other => Opcode::Unknown(other),
        }
    }

    /// The wire byte.
    pub const fn to_u8(self) -> u8 {
        match self {
            Opcode::CreateAndWriteObj => 0x01,
            Opcode::ReadObj => 0x02,
            Opcode::WriteObj => 0x03,
            Opcode::RemoveObj => 0x04,
            Opcode::DiscardObj => 0x05,
            Opcode::NewVdi => 0x11,
            Opcode::LockVdi => 0x12,
            Opcode::ReleaseVdi => 0x13,
            Opcode::GetVdiInfo => 0x14,
            Opcode::ReadVdis => 0x15,
            Opcode::FlushVdi => 0x16,
            Opcode::DelVdi => 0x17,
            Opcode::GetClusterDefault => 0x18,
            Opcode::GetNodeList => 0x82,
            Opcode::StatSheep => 0x86,
            Opcode::StatCluster => 0x87,
            Opcode::GetVdiAttr => 0x89,
            Opcode::GetObjList => 0xA1,
            Opcode::CreateAndWritePeer => 0xA3,
            Opcode::ReadPeer => 0xA4,
            Opcode::WritePeer => 0xA5,
            Opcode::RemovePeer => 0xA6,
            Opcode::GetVdiCopies => 0xAB,
            Opcode::GetHash => 0xB4,
            Opcode::ClusterInfo => 0xBE,
            Opcode::RepairReplica => 0xC5,
            Opcode::ReadDelVdis => 0xC9,
            Opcode::Unknown(other) => other,
        }
    }

    /// Internal (sheep-to-sheep) opcodes are 0x80 and above; the server
    /// accepts them only with `proto_ver` 0x0A.
    pub const fn is_internal(self) -> bool {
        self.to_u8() >= 0x80
    }

    /// The `proto_ver` a request with this opcode must carry: 0x02 for client
    /// ops and 0x0A for internal ones (PROTOCOL.md §3).
    pub const fn proto_ver(self) -> u8 {
        if self.is_internal() {
            super::SHEEP_PROTO_VER
        } else {
            super::PROTO_VER
        }
    }

    /// Which layout the 32 op-specific bytes of a request with this opcode use.
    pub const fn args_kind(self) -> ArgsKind {
        match self {
            Opcode::CreateAndWriteObj
            | Opcode::ReadObj
            | Opcode::WriteObj
            | Opcode::RemoveObj
            | Opcode::DiscardObj
            | Opcode::CreateAndWritePeer
            | Opcode::ReadPeer
            | Opcode::WritePeer
            | Opcode::RemovePeer
            | Opcode::GetHash => ArgsKind::Obj,
            Opcode::NewVdi
            | Opcode::LockVdi
            | Opcode::ReleaseVdi
            | Opcode::GetVdiInfo
            | Opcode::DelVdi
            | Opcode::GetVdiAttr => ArgsKind::Vdi,
            Opcode::GetClusterDefault => ArgsKind::ClusterDefault,
            Opcode::ReadVdis | Opcode::ReadDelVdis | Opcode::FlushVdi => ArgsKind::Empty,
            _ => ArgsKind::Raw,
        }
    }

    /// Which layout the 28 op-specific bytes of a reply to this opcode
    /// use: the request's, except GET_HASH, whose reply carries the
    /// SHA-1 digest where object replies carry copies and offset.
    pub const fn reply_args_kind(self) -> ArgsKind {
        match self {
            Opcode::GetHash => ArgsKind::Raw,
            other => other.args_kind(),
        }
    }

    /// The protocol's name for the opcode (`CREATE_AND_WRITE_OBJ`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Opcode::CreateAndWriteObj => "CREATE_AND_WRITE_OBJ",
            Opcode::ReadObj => "READ_OBJ",
            Opcode::WriteObj => "WRITE_OBJ",
            Opcode::RemoveObj => "REMOVE_OBJ",
            Opcode::DiscardObj => "DISCARD_OBJ",
            Opcode::NewVdi => "NEW_VDI",
            Opcode::LockVdi => "LOCK_VDI",
            Opcode::ReleaseVdi => "RELEASE_VDI",
            Opcode::GetVdiInfo => "GET_VDI_INFO",
            Opcode::ReadVdis => "READ_VDIS",
            Opcode::FlushVdi => "FLUSH_VDI",
            Opcode::DelVdi => "DEL_VDI",
            Opcode::GetClusterDefault => "GET_CLUSTER_DEFAULT",
            Opcode::GetNodeList => "GET_NODE_LIST",
            Opcode::StatSheep => "STAT_SHEEP",
            Opcode::StatCluster => "STAT_CLUSTER",
            Opcode::GetVdiAttr => "GET_VDI_ATTR",
            Opcode::GetObjList => "GET_OBJ_LIST",
            Opcode::CreateAndWritePeer => "CREATE_AND_WRITE_PEER",
            Opcode::ReadPeer => "READ_PEER",
            Opcode::WritePeer => "WRITE_PEER",
            Opcode::RemovePeer => "REMOVE_PEER",
            Opcode::GetVdiCopies => "GET_VDI_COPIES",
            Opcode::GetHash => "GET_HASH",
            Opcode::ClusterInfo => "CLUSTER_INFO",
            Opcode::RepairReplica => "REPAIR_REPLICA",
            Opcode::ReadDelVdis => "READ_DEL_VDIS",
            Opcode::Unknown(_) => "UNKNOWN",
        }
    }
}

impl fmt::Display for Opcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Opcode::Unknown(code) => write!(f, "opcode {code:#04x}"),
            known => f.write_str(known.name()),
        }
    }
}

/// The layout of the 32 op-specific bytes (offsets 16..48) of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgsKind {
    /// `sd_req.obj`: object I/O.
    Obj,
    /// `sd_req.vdi`: VDI operations.
    Vdi,
    /// GET_CLUSTER_DEFAULT: no arguments.
    ClusterDefault,
    /// READ_VDIS, READ_DEL_VDIS, FLUSH_VDI: no arguments.
    Empty,
    /// Anything else: the bytes are kept as they are.
    Raw,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_and_unknown_ones_are_kept() {
        for code in 0..=255u8 {
            assert_eq!(Opcode::from_u8(code).to_u8(), code);
        }
        assert_eq!(Opcode::from_u8(0x02), Opcode::ReadObj);
        assert_eq!(Opcode::from_u8(0x82), Opcode::GetNodeList);
        assert_eq!(Opcode::from_u8(0xEE), Opcode::Unknown(0xEE));
    }

    #[test]
    fn internal_requests_speak_version_0x0a() {
        // PROTOCOL.md §12: 0x80 and up are sheep's own requests.
        assert!(Opcode::GetNodeList.is_internal());
        assert_eq!(Opcode::GetNodeList.proto_ver(), 0x0a);
        assert!(!Opcode::ReadObj.is_internal());
        assert_eq!(Opcode::ReadObj.proto_ver(), 0x02);
        assert_eq!(Opcode::ReadObj.name(), "READ_OBJ");
    }
}
