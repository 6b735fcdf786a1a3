//! VDI attributes (GET_VDI_ATTR 0x89, PROTOCOL.md §9.10): small named
//! values kept beside a VDI, as `dog vdi setattr` and `getattr` keep them.
//!
//! An attribute is a `struct sheepdog_vdi_attr` of [`ATTR_LEN`] bytes: the
//! VDI's name and tag, the snapshot id, the key and the value. The server
//! stores it itself, in an object under the *hash* of the VDI's name
//! ([`crate::hash::vid_hash`]), in a slot found by hashing name, tag,
//! snapshot id and key and probing on. A set sends the whole struct with
//! CREAT (and EXCL to fail if the key exists); a delete sends it with DEL
//! (the server then clears the object's first byte, leaving a tombstone); a
//! get sends it with neither, learns the slot from the reply, and reads the
//! object.
//!
//! [`encode`] writes the struct into a caller's buffer, [`Attr::parse`]
//! reads one back, checked, and [`AttrOp`] is the conversation of an
//! [`Exchange`](crate::reply::Exchange) over that buffer: its requests,
//! its replies through the one receive path into the buffer, then its
//! outcome. No attribute is believed unless it is the one asked for; a
//! key that is not there is the exchange `refused_with(ResultCode::NoObj)`.

use byteorder::{ByteOrder, LittleEndian};

use crate::inode::trim_nul;
use crate::oid::{Oid, Vid};
use crate::reply::{Accept, Conversation, Next, Problem, Want};
use crate::wire::{Flags, Request, Response, ResponseArgs};

/// Bytes of `struct sheepdog_vdi_attr`, and of an attribute object.
pub const ATTR_LEN: usize = 66_320;
/// The longest key: 255 bytes and its NUL (`SD_MAX_VDI_ATTR_KEY_LEN`).
pub const MAX_KEY: usize = 255;
/// The longest value (`SD_MAX_VDI_ATTR_VALUE_LEN`).
pub const MAX_VALUE: usize = 65_536;
/// The longest VDI name or tag: 255 bytes and a NUL.
pub const MAX_NAME: usize = 255;

const NAME: usize = 0;
const TAG: usize = 256;
const CTIME: usize = 512;
const SNAP_ID: usize = 520;
const VALUE_LEN: usize = 524;
const KEY: usize = 528;
const VALUE: usize = 784;

/// Why an attribute cannot be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttrError {
    /// The buffer is shorter than [`ATTR_LEN`].
    BufferTooSmall,
    /// A name, tag or key longer than 255 bytes, or empty (name, key), or
    /// holding a NUL.
    BadField(&'static str),
    /// A value longer than [`MAX_VALUE`].
    ValueTooLong,
}

impl core::fmt::Display for AttrError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AttrError::BufferTooSmall => {
                write!(f, "an attribute needs a buffer of {ATTR_LEN} bytes")
            }
            AttrError::BadField(field) => write!(
                f,
                "bad {field}: 1 to 255 bytes without NUL (a tag may be empty)"
            ),
            AttrError::ValueTooLong => {
                write!(f, "the value is longer than {MAX_VALUE} bytes")
            }
        }
    }
}

impl core::error::Error for AttrError {}

/// Write the attribute of VDI `name` (snapshot `tag` or `snap_id`, both
/// empty/0 for the working VDI) with `key` and `value` into `buf`, which
/// must hold [`ATTR_LEN`] bytes: the payload of GET_VDI_ATTR.
pub fn encode(
    buf: &mut [u8],
    name: &[u8],
    tag: &[u8],
    snap_id: u32,
    key: &[u8],
    value: &[u8],
) -> Result<(), AttrError> {
    let buf = buf.get_mut(..ATTR_LEN).ok_or(AttrError::BufferTooSmall)?;
    let field_ok = |f: &[u8], empty_ok: bool| {
        f.len() <= MAX_NAME && !f.contains(&0) && (empty_ok || !f.is_empty())
    };
    if !field_ok(name, false) {
        return Err(AttrError::BadField("name"));
    }
    if !field_ok(tag, true) {
        return Err(AttrError::BadField("tag"));
    }
    if !field_ok(key, false) || key.len() > MAX_KEY {
        return Err(AttrError::BadField("key"));
    }
    if value.len() > MAX_VALUE {
        return Err(AttrError::ValueTooLong);
    }
    buf.fill(0);
    buf[NAME..NAME + name.len()].copy_from_slice(name);
    buf[TAG..TAG + tag.len()].copy_from_slice(tag);
    LittleEndian::write_u32(&mut buf[SNAP_ID..SNAP_ID + 4], snap_id);
    LittleEndian::write_u32(&mut buf[VALUE_LEN..VALUE_LEN + 4], value.len() as u32);
    buf[KEY..KEY + key.len()].copy_from_slice(key);
    buf[VALUE..VALUE + value.len()].copy_from_slice(value);
    Ok(())
}

/// An attribute as an object holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr<'a> {
    /// The VDI's name (empty in a deleted slot).
    pub name: &'a [u8],
    /// The snapshot tag.
    pub tag: &'a [u8],
    /// The snapshot id.
    pub snap_id: u32,
    /// The VDI's creation time, as the server stamped it.
    pub ctime: u64,
    /// The key.
    pub key: &'a [u8],
    /// The value.
    pub value: &'a [u8],
}

impl<'a> Attr<'a> {
    /// The attribute in `bytes` (an attribute object, [`ATTR_LEN`] bytes),
    /// checked: its value length within the object.
    pub fn parse(bytes: &'a [u8]) -> Result<Attr<'a>, Problem> {
        if bytes.len() < VALUE {
            return Err(Problem::Length {
                got: bytes.len() as u32,
                expected: ATTR_LEN as u32,
            });
        }
        let value_len = LittleEndian::read_u32(&bytes[VALUE_LEN..VALUE_LEN + 4]) as usize;
        if value_len > MAX_VALUE || VALUE + value_len > bytes.len() {
            return Err(Problem::Field {
                name: "value_len",
                got: value_len as u64,
                expected: 0,
            });
        }
        Ok(Attr {
            name: trim_nul(&bytes[NAME..NAME + 256]),
            tag: trim_nul(&bytes[TAG..TAG + 256]),
            snap_id: LittleEndian::read_u32(&bytes[SNAP_ID..SNAP_ID + 4]),
            ctime: LittleEndian::read_u64(&bytes[CTIME..CTIME + 8]),
            key: trim_nul(&bytes[KEY..KEY + 256]),
            value: &bytes[VALUE..VALUE + value_len],
        })
    }

    /// Whether the slot was deleted (DEL clears the name's first byte).
    pub fn is_deleted(&self) -> bool {
        self.name.is_empty()
    }
}

/// What an [`AttrOp`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttrKind {
    /// Read the value of the key.
    Get,
    /// Set the value (create or replace; with `exclusive`, fail with
    /// VDI_EXIST if the key is there).
    Set {
        /// CREAT | EXCL.
        exclusive: bool,
    },
    /// Delete the key.
    Delete,
    /// Read the attribute object `oid` as it is (for a listing).
    Read(Oid),
}

/// What an [`AttrOp`] came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttrDone<'a> {
    /// Set or deleted.
    Done,
    /// The attribute read, and where it lives.
    Value(Attr<'a>, Oid),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// GET_VDI_ATTR is next.
    Asking,
    /// The attribute object is next, or was read last.
    Reading(Oid),
}

/// One attribute exchange, as an [`Exchange`](crate::reply::Exchange)'s
/// conversation over a buffer of [`ATTR_LEN`] bytes that holds the
/// attribute [`encode`]d; see the module docs.
#[derive(Clone, Debug)]
pub struct AttrOp {
    kind: AttrKind,
    snap_id: u32,
    /// What was asked, to check what is read back: name, tag, key.
    want: [u8; KEY + 256],
    step: Step,
}

impl AttrOp {
    /// `kind` of the attribute `attr` (the exchange's buffer as
    /// [`encode`] wrote it; for `Read` its bytes are not used).
    pub fn new(attr: &[u8], kind: AttrKind) -> Result<AttrOp, AttrError> {
        if attr.len() < ATTR_LEN {
            return Err(AttrError::BufferTooSmall);
        }
        let mut want = [0u8; KEY + 256];
        want.copy_from_slice(&attr[..KEY + 256]);
        Ok(AttrOp {
            kind,
            snap_id: LittleEndian::read_u32(&attr[SNAP_ID..SNAP_ID + 4]),
            want,
            step: match kind {
                AttrKind::Read(oid) => Step::Reading(oid),
                _ => Step::Asking,
            },
        })
    }
}

impl Conversation for AttrOp {
    type Outcome<'a> = AttrDone<'a>;

    fn request(&self, id: u32, _buf_len: u32) -> Request {
        match self.step {
            Step::Asking => {
                let flags = match self.kind {
                    AttrKind::Set { exclusive: false } => Flags::CREAT,
                    AttrKind::Set { exclusive: true } => Flags::CREAT | Flags::EXCL,
                    AttrKind::Delete => Flags::DEL,
                    _ => Flags::NONE,
                };
                Request::get_vdi_attr(id, flags, self.snap_id, ATTR_LEN as u32)
            }
            Step::Reading(oid) => Request::read_obj(id, oid, 0, ATTR_LEN as u32),
        }
    }

    fn want(&self, _req: &Request) -> Want {
        match self.step {
            Step::Reading(_) => Want::Exact(ATTR_LEN as u32),
            Step::Asking => Want::Ignored,
        }
    }

    fn accept(&mut self, _req: &Request, rsp: &Response) -> Result<Accept, Problem> {
        match (self.step, self.kind, rsp.args) {
            (Step::Reading(_), _, _) => Ok(Accept::Payload(0..ATTR_LEN)),
            // A get learns the slot, then reads its object.
            (
                Step::Asking,
                AttrKind::Get,
                ResponseArgs::Vdi {
                    vdi_id, attr_id, ..
                },
            ) => {
                let v = Vid::new(vdi_id).map_err(|_| Problem::Vid { got: vdi_id })?;
                self.step = Step::Reading(Oid::attr(v, attr_id));
                Ok(Accept::Skip(Next::Ask))
            }
            (Step::Asking, _, _) => Ok(Accept::Skip(Next::Done)),
        }
    }

    /// The attribute read must be the one asked for (a listing's read
    /// takes any).
    fn check(&mut self, _req: &Request, bytes: &[u8]) -> Result<Next, Problem> {
        let a = Attr::parse(bytes)?;
        if matches!(self.kind, AttrKind::Read(_)) {
            return Ok(Next::Done);
        }
        let w = &self.want;
        let same = a.name == trim_nul(&w[NAME..NAME + 256])
            && a.tag == trim_nul(&w[TAG..TAG + 256])
            && a.snap_id == self.snap_id
            && a.key == trim_nul(&w[KEY..KEY + 256]);
        if !same {
            return Err(Problem::Field {
                name: "key",
                got: 0,
                expected: 0,
            });
        }
        Ok(Next::Done)
    }

    fn outcome<'a>(&self, buf: &'a [u8]) -> Result<AttrDone<'a>, Problem> {
        match self.step {
            Step::Asking => Ok(AttrDone::Done),
            Step::Reading(oid) => {
                let bytes = buf.get(..ATTR_LEN).unwrap_or(buf);
                Attr::parse(bytes).map(|a| AttrDone::Value(a, oid))
            }
        }
    }
}
