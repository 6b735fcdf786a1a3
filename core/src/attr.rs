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
//! reads one back, checked, and [`AttrOp`] is the sans-IO exchange, like
//! [`crate::nodes::NodeProbe`]: its requests, its replies through the one
//! receive path into the caller's buffer, then its outcome. No attribute
//! is believed unless it is the one asked for.

use byteorder::{ByteOrder, LittleEndian};

use crate::engine::reply::{self, Asked, Refusal, Want};
use crate::engine::{Error, Incoming, Problem, Receive};
use crate::inode::trim_nul;
use crate::oid::{Oid, Vid};
use crate::receive::Replies;
use crate::wire::{Flags, Request, Response, ResponseArgs, ResultCode, HEADER_LEN};

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
enum State {
    /// GET_VDI_ATTR is to be sent or on the wire.
    Asking,
    /// The attribute object is to be read, or being read.
    Reading(Oid),
    /// Its bytes are in the buffer.
    Read(Oid),
    Done,
    Failed(Error),
}

/// One attribute exchange; see the module docs.
#[derive(Debug)]
pub struct AttrOp<B> {
    buf: B,
    id: u32,
    snap_id: u32,
    kind: AttrKind,
    state: State,
    /// What was asked, to check what is read back: name, tag, key.
    want: [u8; KEY + 256],
    sent: bool,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> AttrOp<B> {
    /// An exchange over `buf` ([`ATTR_LEN`] bytes at least), which holds
    /// the attribute [`encode`]d (for `Read`, only its buffer is used),
    /// with request ids from `id` on.
    pub fn new(buf: B, id: u32, kind: AttrKind) -> Result<AttrOp<B>, AttrError> {
        let b = buf.as_ref();
        if b.len() < ATTR_LEN {
            return Err(AttrError::BufferTooSmall);
        }
        let mut want = [0u8; KEY + 256];
        want.copy_from_slice(&b[..KEY + 256]);
        let snap_id = LittleEndian::read_u32(&b[SNAP_ID..SNAP_ID + 4]);
        let state = match kind {
            AttrKind::Read(oid) => State::Reading(oid),
            _ => State::Asking,
        };
        Ok(AttrOp {
            buf,
            id,
            snap_id,
            kind,
            state,
            want,
            sent: false,
        })
    }

    fn asked(&self) -> Option<Request> {
        match self.state {
            State::Asking => {
                let flags = match self.kind {
                    AttrKind::Set { exclusive: false } => Flags::CREAT,
                    AttrKind::Set { exclusive: true } => Flags::CREAT | Flags::EXCL,
                    AttrKind::Delete => Flags::DEL,
                    _ => Flags::NONE,
                };
                Some(Request::get_vdi_attr(
                    self.id,
                    flags,
                    self.snap_id,
                    ATTR_LEN as u32,
                ))
            }
            State::Reading(oid) => Some(Request::read_obj(self.id, oid, 0, ATTR_LEN as u32)),
            _ => None,
        }
    }

    /// The next request to send (its header), and whether the attribute
    /// ([`AttrOp::payload`]) follows it; `None` while one is on the wire
    /// or when done.
    pub fn poll_transmit(&mut self) -> Option<([u8; HEADER_LEN], bool)> {
        if self.sent {
            return None;
        }
        let req = self.asked()?;
        self.sent = true;
        Some((req.to_bytes(), req.flags.has_payload()))
    }

    /// The payload that follows a GET_VDI_ATTR header.
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[..ATTR_LEN]
    }

    fn fail(&mut self, e: Error) -> Error {
        self.state = State::Failed(e);
        e
    }

    /// A reply header arrived: where its payload goes. An error means the
    /// connection is out of step: drop it without reading the payload.
    pub fn handle_header(&mut self, header: &[u8]) -> Result<Incoming, Error> {
        let Some(req) = self.asked().filter(|_| self.sent) else {
            let rsp = Response::parse_bytes(header)?;
            return Err(Error::UnexpectedReply { id: rsp.id });
        };
        let reading = matches!(self.state, State::Reading(_));
        let want = if reading {
            Want::Exact(ATTR_LEN as u32)
        } else {
            Want::Ignored
        };
        let screened = reply::screen(header, true, &req, want);
        if !matches!(screened, Err(Refusal::OutOfStep(_))) {
            // The reply to this request came: the next one gets a new id.
            self.sent = false;
            self.id = self.id.wrapping_add(1).max(1);
        }
        let rsp = match screened {
            Ok(rsp) => rsp,
            Err(r) => {
                return r.settle(|e| {
                    self.fail(e);
                })
            }
        };
        let a = Asked::of(&req);
        let discard = Incoming {
            len: rsp.data_length,
            into: Receive::Discard,
        };
        match self.state {
            State::Reading(oid) => {
                self.state = State::Read(oid);
                Ok(Incoming {
                    len: rsp.data_length,
                    into: Receive::Own(0..ATTR_LEN),
                })
            }
            _ => {
                self.state = match (self.kind, rsp.args) {
                    (
                        AttrKind::Get,
                        ResponseArgs::Vdi {
                            vdi_id, attr_id, ..
                        },
                    ) => match Vid::new(vdi_id) {
                        Ok(v) => State::Reading(Oid::attr(v, attr_id)),
                        Err(_) => {
                            let bad = a.bad(Problem::Vid { got: vdi_id });
                            return Err(self.fail(Error::BadReply(bad)));
                        }
                    },
                    _ => State::Done,
                };
                Ok(discard)
            }
        }
    }

    /// The payload is in the buffer: check it is the attribute asked for
    /// (a listing's read takes any).
    pub fn handle_payload(&mut self) {
        let State::Read(oid) = self.state else {
            return;
        };
        let asked = Asked::of(&Request::read_obj(0, oid, 0, ATTR_LEN as u32));
        let bytes = &self.buf.as_ref()[..ATTR_LEN];
        let problem = match Attr::parse(bytes) {
            Err(p) => Some(p),
            Ok(_) if matches!(self.kind, AttrKind::Read(_)) => None,
            Ok(a) => {
                let w = &self.want;
                let same = a.name == trim_nul(&w[NAME..NAME + 256])
                    && a.tag == trim_nul(&w[TAG..TAG + 256])
                    && a.snap_id == self.snap_id
                    && a.key == trim_nul(&w[KEY..KEY + 256]);
                (!same).then_some(Problem::Field {
                    name: "key",
                    got: 0,
                    expected: 0,
                })
            }
        };
        if let Some(p) = problem {
            self.fail(Error::BadReply(asked.bad(p)));
        }
    }

    /// The outcome once the last reply is in.
    pub fn outcome(&self) -> Option<Result<AttrDone<'_>, Error>> {
        match self.state {
            State::Asking | State::Reading(_) => None,
            State::Failed(e) => Some(Err(e)),
            State::Done => Some(Ok(AttrDone::Done)),
            State::Read(oid) => Some(
                Attr::parse(&self.buf.as_ref()[..ATTR_LEN])
                    .map(|a| AttrDone::Value(a, oid))
                    .map_err(|p| {
                        let asked = Asked::of(&Request::read_obj(0, oid, 0, ATTR_LEN as u32));
                        Error::BadReply(asked.bad(p))
                    }),
            ),
        }
    }

    /// Whether the server said the key is not there (NO_OBJ).
    pub fn is_missing(&self) -> bool {
        matches!(
            self.state,
            State::Failed(Error::Server {
                result: ResultCode::NoObj,
                ..
            })
        )
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Replies for AttrOp<B> {
    fn handle_header(&mut self, header: &[u8]) -> Result<Incoming, Error> {
        AttrOp::handle_header(self, header)
    }
    fn handle_payload(&mut self, _now: u64, _scratch: &[u8]) {
        AttrOp::handle_payload(self)
    }
    fn own_bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf.as_mut()[..ATTR_LEN]
    }
}
