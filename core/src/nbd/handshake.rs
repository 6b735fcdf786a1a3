//! The fixed newstyle negotiation, server side (`doc/proto.md`,
//! "Handshake" and "Option types").
//!
//! ```text
//! S: NBDMAGIC IHAVEOPT handshake-flags     (greeting)
//! C: client-flags
//! C: IHAVEOPT option length data           (any number of options)
//! S: REPLY_MAGIC option reply-type length data ...
//! ... until GO or EXPORT_NAME starts transmission, or ABORT ends it.
//! ```
//!
//! [`Handshake::parse`] takes the client's bytes from the start of what
//! has not been consumed yet. It answers what needs no knowledge of the
//! exports itself (structured replies, metadata contexts, abort, unknown,
//! too large and malformed options: the negotiation goes on after each)
//! and asks the caller about the rest ([`Question`]).
//!
//! TLS (`doc/proto.md`, "TLS support"): a handshake made
//! [`Handshake::with_tls`] answers NBD_OPT_STARTTLS with
//! [`Step::StartTls`]: the caller sends the reply, then runs the TLS
//! handshake on the connection and calls [`Handshake::tls_started`]; the
//! negotiation starts afresh inside TLS. Where TLS is required, every
//! other option before it gets NBD_REP_ERR_TLS_REQD (EXPORT_NAME, which
//! has no error reply, closes the connection). TLS itself is the caller's.

use byteorder::{BigEndian, ByteOrder};
use heapless::Vec;

use super::{
    base_allocation, client_flags, handshake_flags, info, opt, put, rep, transmission_flags, Error,
    IHAVEOPT, MAX_STRING, NBDMAGIC, REPLY_MAGIC,
};

/// Bytes of the server's greeting.
pub const GREETING_LEN: usize = 18;
/// The longest option payload read; a longer one is skipped and answered
/// with `NBD_REP_ERR_TOO_BIG`.
pub const MAX_OPTION_LEN: usize = 8192;
/// An input buffer of this size always holds a whole option.
pub const INPUT_BUF_LEN: usize = OPTION_HEADER_LEN + MAX_OPTION_LEN;
/// An output buffer of this size holds any reply the handshake writes
/// (with a description of up to [`MAX_DESCRIPTION`] bytes).
pub const REPLY_BUF_LEN: usize = 8192;
/// The longest export description sent.
pub const MAX_DESCRIPTION: usize = 1024;
/// Bytes of the option header: IHAVEOPT, option, length.
const OPTION_HEADER_LEN: usize = 16;
/// Bytes of the option reply header.
const REPLY_HEADER_LEN: usize = 20;

/// An export name, as the client sent it.
pub type Name = Vec<u8, MAX_STRING>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Greeting,
    ClientFlags,
    Options,
    Transmission,
    Closed,
}

/// Whether a server offers TLS (NBD_OPT_STARTTLS).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tls {
    /// Not at all: STARTTLS gets NBD_REP_ERR_UNSUP.
    #[default]
    Off,
    /// Offered: clients may upgrade, or go on in plain text.
    On,
    /// Required: nothing but STARTTLS and ABORT before the upgrade.
    Require,
}

/// The negotiation of one connection.
#[derive(Clone, Debug)]
pub struct Handshake {
    phase: Phase,
    tls: Tls,
    /// The connection runs inside TLS.
    tls_active: bool,
    no_zeroes: bool,
    structured: bool,
    /// The export name the last SET_META_CONTEXT selected
    /// `base:allocation` for.
    meta: Option<Name>,
    /// Bytes of a too large option still to be discarded.
    skip: u32,
}

/// Which optional information a client asked for in GO or INFO.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InfoWanted {
    /// NBD_INFO_NAME.
    pub name: bool,
    /// NBD_INFO_DESCRIPTION.
    pub description: bool,
    /// NBD_INFO_BLOCK_SIZE (always sent: the minimum is the one that any
    /// client honours).
    pub block_size: bool,
}

/// What the caller must answer, with the exports it knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Question {
    /// NBD_OPT_EXPORT_NAME: start transmission for `name`, or close.
    ExportName {
        /// The name (empty: the default export).
        name: Name,
    },
    /// NBD_OPT_GO: describe `name` and start transmission, or refuse.
    Go {
        /// The name (empty: the default export).
        name: Name,
        /// What else the client asked for.
        info: InfoWanted,
    },
    /// NBD_OPT_INFO: describe `name`, or refuse.
    Info {
        /// The name (empty: the default export).
        name: Name,
        /// What else the client asked for.
        info: InfoWanted,
    },
    /// NBD_OPT_LIST: one [`Handshake::answer_list_entry`] per export, then
    /// [`Handshake::answer_list_end`].
    List,
}

impl Question {
    /// The export name asked about, if any.
    pub fn name(&self) -> Option<&[u8]> {
        match self {
            Question::ExportName { name }
            | Question::Go { name, .. }
            | Question::Info { name, .. } => Some(name),
            Question::List => None,
        }
    }

    fn option(&self) -> u32 {
        match self {
            Question::ExportName { .. } => opt::EXPORT_NAME,
            Question::Go { .. } => opt::GO,
            Question::Info { .. } => opt::INFO,
            Question::List => opt::LIST,
        }
    }
}

/// What one call of [`Handshake::parse`] did.
// The question carries the export name by value (up to 4 KiB): without an
// allocator there is nowhere else to keep it once the input is consumed.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The input must hold `need` bytes before anything can be parsed.
    NeedMore {
        /// Bytes needed from the start of the input.
        need: usize,
    },
    /// `consumed` input bytes were handled; send the first `reply` bytes
    /// of the output buffer (possibly none).
    Answered {
        /// Input bytes used.
        consumed: usize,
        /// Output bytes to send.
        reply: usize,
    },
    /// `consumed` input bytes asked a question the caller answers.
    Ask {
        /// Input bytes used.
        consumed: usize,
        /// The question.
        question: Question,
    },
    /// The client asked for TLS: send `reply` bytes (the ACK) in plain
    /// text, then run the TLS handshake on the connection and call
    /// [`Handshake::tls_started`]; nothing more is parsed before that.
    StartTls {
        /// Input bytes used.
        consumed: usize,
        /// Output bytes to send.
        reply: usize,
    },
    /// The client ended the negotiation: send `reply` bytes, then close.
    Close {
        /// Input bytes used.
        consumed: usize,
        /// Output bytes to send.
        reply: usize,
    },
}

/// An export, as the caller describes it in an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Export<'a> {
    /// Its canonical name (sent when the client asks).
    pub name: &'a [u8],
    /// A description for people (may be empty).
    pub description: &'a [u8],
    /// Size in bytes.
    pub size: u64,
    /// Transmission flags; `HAS_FLAGS` is added, and `SEND_DF` dropped
    /// without structured replies.
    pub flags: u16,
    /// Minimum block size (1 or 512, ...).
    pub min_block: u32,
    /// Preferred block size.
    pub preferred_block: u32,
    /// Largest request payload.
    pub max_block: u32,
}

/// Why an export is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No such export (NBD_REP_ERR_UNKNOWN).
    Unknown,
    /// Not allowed (NBD_REP_ERR_POLICY), e.g. locked by another client.
    Policy,
    /// The server is shutting down (NBD_REP_ERR_SHUTDOWN).
    Shutdown,
    /// It could not be opened for another reason (NBD_REP_ERR_PLATFORM is
    /// wrong, so NBD_REP_ERR_UNKNOWN with the reason as message).
    Failed,
}

impl Refusal {
    fn rep(self) -> u32 {
        match self {
            Refusal::Unknown | Refusal::Failed => rep::ERR_UNKNOWN,
            Refusal::Policy => rep::ERR_POLICY,
            Refusal::Shutdown => rep::ERR_SHUTDOWN,
        }
    }
}

/// What transmission was negotiated with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// Structured replies.
    pub structured: bool,
    /// `base:allocation` was selected for this export: BLOCK_STATUS may
    /// be sent, answered with context id [`base_allocation::ID`].
    pub base_allocation: bool,
    /// The transmission flags sent.
    pub flags: u16,
}

/// The effect of an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Negotiation goes on.
    Continue,
    /// Transmission starts after the reply.
    Transmission(Negotiated),
    /// Send the reply (if any), then close.
    Close,
}

/// An answer written into the output buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    /// Output bytes to send.
    pub reply: usize,
    /// What happens next.
    pub outcome: Outcome,
}

impl Default for Handshake {
    fn default() -> Handshake {
        Handshake::new()
    }
}

impl Handshake {
    /// A connection that has not been greeted yet, without TLS.
    pub fn new() -> Handshake {
        Handshake::with_tls(Tls::Off)
    }

    /// A connection that has not been greeted yet, offering or requiring
    /// TLS as `tls` says.
    pub fn with_tls(tls: Tls) -> Handshake {
        Handshake {
            phase: Phase::Greeting,
            tls,
            tls_active: false,
            no_zeroes: false,
            structured: false,
            meta: None,
            skip: 0,
        }
    }

    /// Whether transmission has started.
    pub fn in_transmission(&self) -> bool {
        self.phase == Phase::Transmission
    }

    /// Whether the connection runs inside TLS.
    pub fn tls_active(&self) -> bool {
        self.tls_active
    }

    /// The TLS handshake after [`Step::StartTls`] succeeded: the
    /// negotiation starts afresh inside TLS (what was negotiated in plain
    /// text is forgotten, as the protocol requires).
    pub fn tls_started(&mut self) {
        if self.phase == Phase::Options && self.tls != Tls::Off {
            self.tls_active = true;
            self.structured = false;
            self.meta = None;
        }
    }

    /// Write the greeting (NBDMAGIC, IHAVEOPT, FIXED_NEWSTYLE|NO_ZEROES).
    pub fn greeting(&mut self, out: &mut [u8]) -> Result<usize, Error> {
        if self.phase != Phase::Greeting {
            return Err(Error::OutOfPhase);
        }
        let mut g = [0u8; GREETING_LEN];
        BigEndian::write_u64(&mut g[0..8], NBDMAGIC);
        BigEndian::write_u64(&mut g[8..16], IHAVEOPT);
        BigEndian::write_u16(
            &mut g[16..18],
            handshake_flags::FIXED_NEWSTYLE | handshake_flags::NO_ZEROES,
        );
        let n = put(out, 0, &g)?;
        self.phase = Phase::ClientFlags;
        Ok(n)
    }

    /// Handle the next client message at the start of `input`, writing any
    /// reply into `out` ([`REPLY_BUF_LEN`] bytes always suffice). An error
    /// means the connection must be closed.
    pub fn parse(&mut self, input: &[u8], out: &mut [u8]) -> Result<Step, Error> {
        match self.phase {
            Phase::ClientFlags => self.client_flags(input),
            Phase::Options => self.option(input, out),
            Phase::Greeting | Phase::Transmission | Phase::Closed => Err(Error::OutOfPhase),
        }
    }

    fn client_flags(&mut self, input: &[u8]) -> Result<Step, Error> {
        let Some(b) = input.get(..4) else {
            return Ok(Step::NeedMore { need: 4 });
        };
        let flags = BigEndian::read_u32(b);
        let known = client_flags::FIXED_NEWSTYLE | client_flags::NO_ZEROES;
        if flags & !known != 0 || flags & client_flags::FIXED_NEWSTYLE == 0 {
            self.phase = Phase::Closed;
            return Err(Error::ClientFlags(flags));
        }
        self.no_zeroes = flags & client_flags::NO_ZEROES != 0;
        self.phase = Phase::Options;
        Ok(Step::Answered {
            consumed: 4,
            reply: 0,
        })
    }

    fn option(&mut self, input: &[u8], out: &mut [u8]) -> Result<Step, Error> {
        if self.skip > 0 {
            let n = (self.skip as usize).min(input.len());
            if n == 0 {
                return Ok(Step::NeedMore { need: 1 });
            }
            self.skip -= n as u32;
            return Ok(Step::Answered {
                consumed: n,
                reply: 0,
            });
        }
        let Some(head) = input.get(..OPTION_HEADER_LEN) else {
            return Ok(Step::NeedMore {
                need: OPTION_HEADER_LEN,
            });
        };
        let magic = BigEndian::read_u64(&head[0..8]);
        if magic != IHAVEOPT {
            self.phase = Phase::Closed;
            return Err(Error::BadMagic {
                what: "option",
                got: magic,
            });
        }
        let option = BigEndian::read_u32(&head[8..12]);
        let len = BigEndian::read_u32(&head[12..16]);
        if len as usize > MAX_OPTION_LEN {
            if option == opt::EXPORT_NAME {
                // EXPORT_NAME has no error reply: the server closes.
                self.phase = Phase::Closed;
                return Err(Error::PayloadTooLarge(len));
            }
            self.skip = len;
            let reply = error_reply(out, option, rep::ERR_TOO_BIG, "option too long")?;
            return Ok(Step::Answered {
                consumed: OPTION_HEADER_LEN,
                reply,
            });
        }
        let need = OPTION_HEADER_LEN + len as usize;
        let Some(data) = input.get(OPTION_HEADER_LEN..need) else {
            return Ok(Step::NeedMore { need });
        };
        let answered = |reply| Step::Answered {
            consumed: need,
            reply,
        };
        let ask = |question| Step::Ask {
            consumed: need,
            question,
        };
        if option == opt::STARTTLS {
            return self.starttls(data, out, need);
        }
        if self.tls == Tls::Require && !self.tls_active && option != opt::ABORT {
            if option == opt::EXPORT_NAME {
                self.phase = Phase::Closed;
                return Err(Error::TlsRequired);
            }
            let why = "TLS is required: send NBD_OPT_STARTTLS first";
            return Ok(answered(error_reply(out, option, rep::ERR_TLS_REQD, why)?));
        }
        match option {
            opt::EXPORT_NAME => match Name::from_slice(data) {
                Ok(name) => Ok(ask(Question::ExportName { name })),
                // Cannot happen (MAX_OPTION_LEN is checked above and
                // exceeds MAX_STRING only for GO's framing), but never
                // panic: EXPORT_NAME failures close.
                Err(()) => {
                    self.phase = Phase::Closed;
                    Err(Error::PayloadTooLarge(len))
                }
            },
            opt::GO | opt::INFO => match parse_go(data) {
                Ok((name, info)) if option == opt::GO => Ok(ask(Question::Go { name, info })),
                Ok((name, info)) => Ok(ask(Question::Info { name, info })),
                Err(why) => Ok(answered(error_reply(out, option, rep::ERR_INVALID, why)?)),
            },
            opt::LIST if data.is_empty() => Ok(ask(Question::List)),
            opt::LIST => Ok(answered(error_reply(
                out,
                option,
                rep::ERR_INVALID,
                "LIST takes no data",
            )?)),
            opt::ABORT => {
                self.phase = Phase::Closed;
                let reply = reply_header(out, 0, option, rep::ACK, 0)?;
                Ok(Step::Close {
                    consumed: need,
                    reply,
                })
            }
            opt::STRUCTURED_REPLY if data.is_empty() => {
                self.structured = true;
                Ok(answered(reply_header(out, 0, option, rep::ACK, 0)?))
            }
            opt::STRUCTURED_REPLY => Ok(answered(error_reply(
                out,
                option,
                rep::ERR_INVALID,
                "STRUCTURED_REPLY takes no data",
            )?)),
            opt::LIST_META_CONTEXT | opt::SET_META_CONTEXT => {
                Ok(answered(self.meta_context(option, data, out)?))
            }
            _ => Ok(answered(error_reply(
                out,
                option,
                rep::ERR_UNSUP,
                "option not supported",
            )?)),
        }
    }

    /// NBD_OPT_STARTTLS, `need` bytes long with its `data`.
    fn starttls(&mut self, data: &[u8], out: &mut [u8], need: usize) -> Result<Step, Error> {
        let refuse = |out: &mut [u8], code, why| {
            Ok(Step::Answered {
                consumed: need,
                reply: error_reply(out, opt::STARTTLS, code, why)?,
            })
        };
        if self.tls == Tls::Off {
            return refuse(out, rep::ERR_UNSUP, "this server does not offer TLS");
        }
        if self.tls_active {
            return refuse(out, rep::ERR_INVALID, "TLS is on already");
        }
        if !data.is_empty() {
            return refuse(out, rep::ERR_INVALID, "STARTTLS takes no data");
        }
        Ok(Step::StartTls {
            consumed: need,
            reply: reply_header(out, 0, opt::STARTTLS, rep::ACK, 0)?,
        })
    }

    /// LIST_META_CONTEXT and SET_META_CONTEXT: this server knows one
    /// context, `base:allocation`, matched by its name (or, in LIST, by
    /// `base:`).
    fn meta_context(&mut self, option: u32, data: &[u8], out: &mut [u8]) -> Result<usize, Error> {
        let set = option == opt::SET_META_CONTEXT;
        if set {
            // Every SET replaces the selection, also one that fails.
            self.meta = None;
        }
        if !self.structured {
            return error_reply(
                out,
                option,
                rep::ERR_INVALID,
                "negotiate structured replies first",
            );
        }
        let (name, queries) = match parse_meta(data) {
            Ok(parsed) => parsed,
            Err(why) => return error_reply(out, option, rep::ERR_INVALID, why),
        };
        let mut matched = !set && queries.count == 0;
        let mut rest = queries.bytes;
        while let Some((query, after)) = next_string(rest) {
            // `base:` lists every context of the namespace; SET must
            // ignore it.
            matched |= query == base_allocation::NAME || (!set && query == b"base:");
            rest = after;
        }
        let mut at = 0;
        if matched {
            // LIST answers with id 0: ids only mean something after SET.
            let id = if set { base_allocation::ID } else { 0 };
            let len = 4 + base_allocation::NAME.len();
            at = reply_header(out, at, option, rep::META_CONTEXT, len as u32)?;
            let mut idb = [0u8; 4];
            BigEndian::write_u32(&mut idb, id);
            at = put(out, at, &idb)?;
            at = put(out, at, base_allocation::NAME)?;
        }
        if set {
            self.meta = matched.then_some(name);
        }
        reply_header(out, at, option, rep::ACK, 0)
    }

    /// Answer an EXPORT_NAME, GO or INFO question: describe `export`, or
    /// refuse with a reason and a message for people.
    pub fn answer_export(
        &mut self,
        out: &mut [u8],
        question: &Question,
        export: Result<&Export<'_>, (Refusal, &str)>,
    ) -> Result<Answer, Error> {
        if self.phase != Phase::Options {
            return Err(Error::OutOfPhase);
        }
        let (name, wanted, go) = match question {
            Question::ExportName { name } => (name, None, true),
            Question::Go { name, info } => (name, Some(*info), true),
            Question::Info { name, info } => (name, Some(*info), false),
            Question::List => return Err(Error::OutOfPhase),
        };
        let option = question.option();
        let export = match export {
            Ok(e) => e,
            Err((why, message)) => {
                if wanted.is_none() {
                    // EXPORT_NAME has no error reply.
                    self.phase = Phase::Closed;
                    return Ok(Answer {
                        reply: 0,
                        outcome: Outcome::Close,
                    });
                }
                return Ok(Answer {
                    reply: error_reply(out, option, why.rep(), message)?,
                    outcome: Outcome::Continue,
                });
            }
        };
        let mut flags = export.flags | transmission_flags::HAS_FLAGS;
        if !self.structured {
            flags &= !transmission_flags::SEND_DF;
        }
        let negotiated = Negotiated {
            structured: self.structured,
            base_allocation: self.meta.as_ref().is_some_and(|m| m == name),
            flags,
        };
        let mut at = 0;
        let Some(wanted) = wanted else {
            // EXPORT_NAME: size, flags, and 124 zeros unless NO_ZEROES.
            let mut b = [0u8; 10];
            BigEndian::write_u64(&mut b[0..8], export.size);
            BigEndian::write_u16(&mut b[8..10], flags);
            at = put(out, at, &b)?;
            if !self.no_zeroes {
                at = put(out, at, &[0u8; 124])?;
            }
            self.phase = Phase::Transmission;
            return Ok(Answer {
                reply: at,
                outcome: Outcome::Transmission(negotiated),
            });
        };
        let mut e = [0u8; 12];
        BigEndian::write_u16(&mut e[0..2], info::EXPORT);
        BigEndian::write_u64(&mut e[2..10], export.size);
        BigEndian::write_u16(&mut e[10..12], flags);
        at = info_reply(out, at, option, &e, &[])?;
        if wanted.name {
            let n = &export.name[..export.name.len().min(MAX_STRING)];
            at = info_reply(out, at, option, &info::NAME.to_be_bytes(), n)?;
        }
        if wanted.description && !export.description.is_empty() {
            let d = &export.description[..export.description.len().min(MAX_DESCRIPTION)];
            at = info_reply(out, at, option, &info::DESCRIPTION.to_be_bytes(), d)?;
        }
        // Sent whether asked for or not, as the spec allows.
        let mut b = [0u8; 14];
        BigEndian::write_u16(&mut b[0..2], info::BLOCK_SIZE);
        BigEndian::write_u32(&mut b[2..6], export.min_block);
        BigEndian::write_u32(&mut b[6..10], export.preferred_block);
        BigEndian::write_u32(&mut b[10..14], export.max_block);
        at = info_reply(out, at, option, &b, &[])?;
        at = reply_header(out, at, option, rep::ACK, 0)?;
        let outcome = if go {
            self.phase = Phase::Transmission;
            Outcome::Transmission(negotiated)
        } else {
            Outcome::Continue
        };
        Ok(Answer { reply: at, outcome })
    }

    /// One export in the answer to LIST.
    pub fn answer_list_entry(&self, out: &mut [u8], name: &[u8]) -> Result<usize, Error> {
        let name = &name[..name.len().min(MAX_STRING)];
        let at = reply_header(out, 0, opt::LIST, rep::SERVER, 4 + name.len() as u32)?;
        let at = put(out, at, &(name.len() as u32).to_be_bytes())?;
        put(out, at, name)
    }

    /// The end of the answer to LIST.
    pub fn answer_list_end(&self, out: &mut [u8]) -> Result<usize, Error> {
        reply_header(out, 0, opt::LIST, rep::ACK, 0)
    }

    /// Refuse a LIST (the exports could not be listed).
    pub fn answer_list_error(&self, out: &mut [u8], message: &str) -> Result<usize, Error> {
        error_reply(out, opt::LIST, rep::ERR_UNKNOWN, message)
    }
}

/// An option reply header at `at`.
fn reply_header(
    out: &mut [u8],
    at: usize,
    option: u32,
    reply_type: u32,
    len: u32,
) -> Result<usize, Error> {
    let mut h = [0u8; REPLY_HEADER_LEN];
    BigEndian::write_u64(&mut h[0..8], REPLY_MAGIC);
    BigEndian::write_u32(&mut h[8..12], option);
    BigEndian::write_u32(&mut h[12..16], reply_type);
    BigEndian::write_u32(&mut h[16..20], len);
    put(out, at, &h)
}

/// An NBD_REP_INFO of `head` and `tail` at `at`.
fn info_reply(
    out: &mut [u8],
    at: usize,
    option: u32,
    head: &[u8],
    tail: &[u8],
) -> Result<usize, Error> {
    let len = (head.len() + tail.len()) as u32;
    let at = reply_header(out, at, option, rep::INFO, len)?;
    let at = put(out, at, head)?;
    put(out, at, tail)
}

/// An error reply with a message for people.
fn error_reply(out: &mut [u8], option: u32, err: u32, message: &str) -> Result<usize, Error> {
    let m = cut(message);
    let at = reply_header(out, 0, option, err, m.len() as u32)?;
    put(out, at, m)
}

/// `s` cut to at most [`MAX_STRING`] bytes on a character boundary.
pub(crate) fn cut(s: &str) -> &[u8] {
    let mut end = s.len().min(MAX_STRING);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s.as_bytes()[..end]
}

/// GO and INFO data: name length, name, request count, requests.
fn parse_go(data: &[u8]) -> Result<(Name, InfoWanted), &'static str> {
    let (name, rest) = next_string(data).ok_or("export name does not fit the option")?;
    let name = Name::from_slice(name).map_err(|()| "export name too long")?;
    let count = rest.get(..2).ok_or("no information request count")?;
    let count = BigEndian::read_u16(count) as usize;
    let reqs = &rest[2..];
    if reqs.len() != count * 2 {
        return Err("information requests do not fit the option");
    }
    let mut wanted = InfoWanted::default();
    for r in reqs.chunks_exact(2) {
        match BigEndian::read_u16(r) {
            info::NAME => wanted.name = true,
            info::DESCRIPTION => wanted.description = true,
            info::BLOCK_SIZE => wanted.block_size = true,
            // EXPORT is always sent; unknown ones are ignored.
            _ => {}
        }
    }
    Ok((name, wanted))
}

/// The queries of a metadata context option, still encoded.
struct Queries<'a> {
    count: u32,
    bytes: &'a [u8],
}

/// LIST/SET_META_CONTEXT data: export name, query count, queries; checked
/// to fit exactly.
fn parse_meta(data: &[u8]) -> Result<(Name, Queries<'_>), &'static str> {
    let (name, rest) = next_string(data).ok_or("export name does not fit the option")?;
    let name = Name::from_slice(name).map_err(|()| "export name too long")?;
    let count = rest.get(..4).ok_or("no query count")?;
    let count = BigEndian::read_u32(count);
    let bytes = &rest[4..];
    let mut walk = bytes;
    for _ in 0..count {
        let (_, after) = next_string(walk).ok_or("queries do not fit the option")?;
        walk = after;
    }
    if !walk.is_empty() {
        return Err("bytes after the last query");
    }
    Ok((name, Queries { count, bytes }))
}

/// A 32-bit length and that many bytes (at most [`MAX_STRING`]), and
/// what follows.
fn next_string(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = BigEndian::read_u32(data.get(..4)?) as usize;
    if len > MAX_STRING {
        return None;
    }
    let s = data.get(4..4 + len)?;
    Some((s, &data[4 + len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_greeting_is_newstyle_and_said_once() {
        let mut hs = Handshake::new();
        let mut out = [0u8; GREETING_LEN];
        assert_eq!(hs.greeting(&mut out), Ok(GREETING_LEN));
        assert_eq!(&out[0..8], b"NBDMAGIC");
        assert_eq!(&out[8..16], b"IHAVEOPT");
        assert_eq!(&out[16..18], &[0, 3], "FIXED_NEWSTYLE | NO_ZEROES");
        assert_eq!(hs.greeting(&mut out), Err(Error::OutOfPhase));
    }

    #[test]
    fn client_flags_must_be_fixed_newstyle() {
        let mut out = [0u8; REPLY_BUF_LEN];
        let mut hs = Handshake::new();
        hs.greeting(&mut out).unwrap();
        assert_eq!(hs.parse(&[0, 0], &mut out), Ok(Step::NeedMore { need: 4 }));
        assert_eq!(
            hs.parse(&[0, 0, 0, 0], &mut out),
            Err(Error::ClientFlags(0))
        );
        let mut hs = Handshake::new();
        hs.greeting(&mut out).unwrap();
        assert!(matches!(
            hs.parse(&[0, 0, 0, 3], &mut out),
            Ok(Step::Answered { consumed: 4, .. })
        ));
    }

    /// An option as a client sends it.
    fn option(code: u32, data: &[u8]) -> std::vec::Vec<u8> {
        let mut v = std::vec::Vec::new();
        v.extend_from_slice(&IHAVEOPT.to_be_bytes());
        v.extend_from_slice(&code.to_be_bytes());
        v.extend_from_slice(&(data.len() as u32).to_be_bytes());
        v.extend_from_slice(data);
        v
    }

    /// The reply type of the option reply at the start of `out`.
    fn reply_type(out: &[u8]) -> u32 {
        BigEndian::read_u32(&out[12..16])
    }

    /// A handshake past the greeting and the client flags.
    fn greeted(tls: Tls) -> Handshake {
        let mut out = [0u8; REPLY_BUF_LEN];
        let mut hs = Handshake::with_tls(tls);
        hs.greeting(&mut out).unwrap();
        hs.parse(&[0, 0, 0, 3], &mut out).unwrap();
        hs
    }

    extern crate std;

    #[test]
    fn starttls_is_refused_where_tls_is_off() {
        let mut out = [0u8; REPLY_BUF_LEN];
        let mut hs = greeted(Tls::Off);
        let msg = option(opt::STARTTLS, &[]);
        assert!(matches!(
            hs.parse(&msg, &mut out),
            Ok(Step::Answered { consumed: 16, .. })
        ));
        assert_eq!(reply_type(&out), rep::ERR_UNSUP);
    }

    #[test]
    fn where_tls_is_required_nothing_but_starttls_goes_first() {
        let mut out = [0u8; REPLY_BUF_LEN];
        let mut hs = greeted(Tls::Require);
        // GO, LIST and STRUCTURED_REPLY: NBD_REP_ERR_TLS_REQD, and the
        // negotiation goes on.
        let mut go = std::vec![0u8; 4];
        go.extend_from_slice(b"vm");
        go.splice(0..4, 2u32.to_be_bytes());
        go.extend_from_slice(&0u16.to_be_bytes());
        for msg in [
            option(opt::GO, &go),
            option(opt::LIST, &[]),
            option(opt::STRUCTURED_REPLY, &[]),
        ] {
            let step = hs.parse(&msg, &mut out).unwrap();
            assert!(matches!(step, Step::Answered { .. }), "{step:?}");
            assert_eq!(reply_type(&out), rep::ERR_TLS_REQD);
        }
        // EXPORT_NAME has no error reply: the connection closes.
        let mut closing = greeted(Tls::Require);
        assert_eq!(
            closing.parse(&option(opt::EXPORT_NAME, b"vm"), &mut out),
            Err(Error::TlsRequired)
        );
        // STARTTLS: the ACK, then the caller upgrades.
        let step = hs.parse(&option(opt::STARTTLS, &[]), &mut out).unwrap();
        let Step::StartTls { consumed, reply } = step else {
            panic!("{step:?}");
        };
        assert_eq!((consumed, reply), (16, 20));
        assert_eq!(reply_type(&out), rep::ACK);
        assert!(!hs.tls_active());
        hs.tls_started();
        assert!(hs.tls_active());
        // Inside TLS: GO is a question; STARTTLS again is invalid.
        let step = hs.parse(&option(opt::GO, &go), &mut out).unwrap();
        assert!(matches!(
            step,
            Step::Ask {
                question: Question::Go { .. },
                ..
            }
        ));
        hs.parse(&option(opt::STARTTLS, &[]), &mut out).unwrap();
        assert_eq!(reply_type(&out), rep::ERR_INVALID);
    }

    #[test]
    fn what_was_negotiated_in_plain_text_is_forgotten_inside_tls() {
        let mut out = [0u8; REPLY_BUF_LEN];
        let mut hs = greeted(Tls::On);
        hs.parse(&option(opt::STRUCTURED_REPLY, &[]), &mut out)
            .unwrap();
        assert_eq!(reply_type(&out), rep::ACK);
        assert!(hs.structured);
        assert!(matches!(
            hs.parse(&option(opt::STARTTLS, &[]), &mut out),
            Ok(Step::StartTls { .. })
        ));
        hs.tls_started();
        assert!(!hs.structured, "negotiated again inside TLS");
        // STARTTLS with data is malformed.
        let mut fresh = greeted(Tls::On);
        fresh.parse(&option(opt::STARTTLS, b"x"), &mut out).unwrap();
        assert_eq!(reply_type(&out), rep::ERR_INVALID);
    }
}
