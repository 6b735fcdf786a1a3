//! VDI attributes: GET_VDI_ATTR (internal 0x89; PROTOCOL.md §9.10),
//! following `cluster_get_vdi_attr()` and `get_vdi_attr()`.

use sheepdog_core::hash::{fnv1a64, fnv1a64_update, vid_hash};
use sheepdog_core::inode::trim_nul;
use sheepdog_core::oid::{Oid, VDI_ATTR_BIT};
use sheepdog_core::wire::{Flags, Request, ResponseArgs, ResultCode};

use super::cluster::{Cluster, Outcome};
use super::inode_io::{eio, read_bytes};
use super::lookup::LookupKey;

/// Size of `struct sheepdog_vdi_attr` and of an attribute object.
const ATTR_LEN: usize = 66_320;
/// Offsets inside it.
const TAG: usize = 256;
const CTIME: usize = 512;
const SNAP_ID: usize = 520;
const KEY: usize = 528;
/// The bytes every request must carry (through `key`).
const MIN_LEN: usize = KEY + 256;
/// Give up probing after this many slots (sheep would go round 2^32).
const MAX_PROBES: u32 = 1 << 16;

/// `hash_vdi_attr()`: FNV-1a over name, tag, snap_id and key.
fn attr_hash(attr: &[u8]) -> u32 {
    let h = fnv1a64(&attr[..256]);
    let h = fnv1a64_update(h, &attr[TAG..TAG + 256]);
    let h = fnv1a64_update(h, &attr[SNAP_ID..SNAP_ID + 4]);
    fnv1a64_update(h, &attr[KEY..KEY + 256]) as u32
}

/// Whether two attributes have the same name, tag, snap_id and key.
fn same_attr(a: &[u8], b: &[u8]) -> bool {
    let field = |x: &[u8], at: usize| trim_nul(&x[at..at + 256]).to_vec();
    field(a, 0) == field(b, 0)
        && field(a, TAG) == field(b, TAG)
        && a[SNAP_ID..SNAP_ID + 4] == b[SNAP_ID..SNAP_ID + 4]
        && field(a, KEY) == field(b, KEY)
}

impl Cluster {
    /// GET_VDI_ATTR: get (no flag), set (CREAT), set-if-absent (CREAT |
    /// EXCL) or delete (DEL) an attribute.
    pub(super) fn op_vdi_attr(&mut self, req: &Request, input: &[u8]) -> Outcome {
        let a = req.vdi().copied().unwrap_or_default();
        if input.len() < MIN_LEN {
            return Outcome::vdi(ResultCode::InvalidParms, 0, 0, 0);
        }
        let mut attr = input.to_vec();
        let name = trim_nul(&attr[..256]).to_vec();
        let tag = trim_nul(&attr[TAG..TAG + 256]).to_vec();
        let key = LookupKey {
            name: &name,
            tag: Some(&tag),
            snapid: a.snapid,
        };
        let (ret, info) = self.vdi_lookup(&key);
        if ret != ResultCode::Success {
            return Outcome::vdi(ret, 0, 0, 0);
        }
        let hvid = vid_hash(&name);
        attr[CTIME..CTIME + 8].copy_from_slice(&info.create_time.to_le_bytes());
        let wr = req.flags.contains(Flags::CREAT);
        let excl = req.flags.contains(Flags::EXCL);
        let delete = req.flags.contains(Flags::DEL);
        let mut attr_id = attr_hash(&attr);
        let result = self.probe_attr(hvid, &mut attr_id, &attr, wr, excl, delete);
        Outcome::with_args(
            result,
            ResponseArgs::Vdi {
                rsvd: 0,
                vdi_id: hvid,
                attr_id,
                copies: self.copies_of(hvid),
                block_size_shift: 0,
            },
            Vec::new(),
        )
    }

    /// The probing loop of `get_vdi_attr()`.
    fn probe_attr(
        &mut self,
        hvid: u32,
        attr_id: &mut u32,
        attr: &[u8],
        wr: bool,
        excl: bool,
        delete: bool,
    ) -> ResultCode {
        let mut ret = ResultCode::NoObj;
        let mut current = Vec::new();
        for _ in 0..MAX_PROBES {
            let oid = Oid(VDI_ATTR_BIT | (u64::from(hvid) << 32) | u64::from(*attr_id));
            if excl || !wr {
                match read_bytes(&*self.store, oid, 0, ATTR_LEN) {
                    Ok(Some(bytes)) => {
                        current = bytes;
                        ret = ResultCode::Success;
                    }
                    Ok(None) => ret = ResultCode::NoObj,
                    Err(e) => ret = e,
                }
            }
            if ret == ResultCode::NoObj && wr {
                return match self.store.create(oid, 0, attr) {
                    Ok(()) => ResultCode::Success,
                    Err(_) => ResultCode::Eio,
                };
            }
            if ret != ResultCode::Success {
                return ret;
            }
            if same_attr(&current, attr) {
                if excl {
                    return ResultCode::VdiExist;
                }
                let written = if delete {
                    self.store.write(oid, 0, &[0]).map_err(eio)
                } else if wr {
                    let mut full = attr.to_vec();
                    full.resize(ATTR_LEN, 0);
                    self.store.write(oid, 0, &full).map_err(eio)
                } else {
                    Ok(true)
                };
                return match written {
                    Ok(true) => ResultCode::Success,
                    _ => ResultCode::Eio,
                };
            }
            *attr_id = attr_id.wrapping_add(1);
        }
        ResultCode::FullVdi
    }
}
