//! One exchange: the conversations outside the engine that ask one node
//! something and check what it answers, one request at a time (the node
//! list, a node's objects, one object, an attribute). Each kind of
//! conversation says only what it asks and what its replies must be (a
//! [`Conversation`]); the [`Exchange`] does the rest the same way for all
//! of them: the request ids, the payload a request carries, the reply
//! screen (the id, the opcode, the length against the buffer offered and
//! against what the request fixes, the server's refusals), the buffer the
//! payload goes into, and the outcome.
//!
//! Sans-IO like the engine: [`Exchange::poll_transmit`] gives a request's
//! header and [`Exchange::payload`] what follows it; replies come in
//! through the one receive path ([`crate::receive::Receiver`], for which
//! an exchange is [`Replies`]); [`Exchange::outcome`] says what it came to.
//!
//! ```
//! use sheepdog_core::nodes::{GetNodeList, NODE_LIST_BUF_LEN};
//! use sheepdog_core::reply::Exchange;
//! use sheepdog_core::wire::{Opcode, Request};
//!
//! let mut ask = Exchange::new(vec![0u8; NODE_LIST_BUF_LEN], 7, GetNodeList::default());
//! let header = ask.poll_transmit().unwrap();
//! assert_eq!(Request::parse_bytes(&header).unwrap().opcode, Opcode::GetNodeList);
//! assert!(ask.payload().is_empty());
//! assert!(ask.poll_transmit().is_none(), "one request at a time");
//! assert!(ask.outcome().is_none(), "no reply yet");
//! ```

use core::ops::Range;

use super::check::{check_header, Asked, Want};
use super::error::{Error, Problem};
use super::incoming::{Incoming, Receive, Replies};
use crate::wire::{Request, Response, ResultCode, HEADER_LEN};

/// What a successful reply's payload is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Accept {
    /// Read it into this range of the exchange's buffer (exactly the
    /// reply's length), then [`Conversation::check`] it.
    Payload(Range<usize>),
    /// Nothing is kept of it (it is read and dropped); then `Next`.
    Skip(Next),
}

/// Whether a conversation goes on after a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// It is over: the outcome is ready.
    Done,
    /// Another request follows ([`Conversation::request`] says which).
    Ask,
}

/// What one kind of exchange asks, and what its replies must be.
pub trait Conversation {
    /// What the exchange came to, lent out of its buffer.
    type Outcome<'a>;

    /// The next request, with id `id`, offering or sending a buffer of
    /// `buf_len` bytes. A request with a payload (the WRITE flag) sends
    /// the first `data_length` bytes of the buffer.
    fn request(&self, id: u32, buf_len: u32) -> Request;

    /// The payload a successful reply to `req` must carry.
    fn want(&self, _req: &Request) -> Want {
        Want::Ignored
    }

    /// A successful reply `rsp` to `req`, its header already screened:
    /// what its payload is for, or why it cannot be believed.
    fn accept(&mut self, req: &Request, rsp: &Response) -> Result<Accept, Problem>;

    /// The payload [`Accept::Payload`] asked for is in `bytes`: check it.
    fn check(&mut self, _req: &Request, _bytes: &[u8]) -> Result<Next, Problem> {
        Ok(Next::Done)
    }

    /// The outcome, once the conversation is over, from the exchange's
    /// buffer; a problem names the last request.
    fn outcome<'a>(&self, buf: &'a [u8]) -> Result<Self::Outcome<'a>, Problem>;
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// A request is to be sent.
    Ready,
    /// This request is on the wire.
    Sent(Request),
    /// Its payload is being read into this range of the buffer.
    Reading(Request, Range<usize>),
    /// The conversation is over; `Request` was the last.
    Done(Request),
    Failed(Error),
}

/// One request at a time and its checked reply; see the module docs.
#[derive(Debug)]
pub struct Exchange<B, C> {
    buf: B,
    id: u32,
    conversation: C,
    state: State,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>, C: Conversation> Exchange<B, C> {
    /// `conversation` over `buf` (what requests send, where replies
    /// land), with request ids from `id` on.
    pub fn new(buf: B, id: u32, conversation: C) -> Exchange<B, C> {
        Exchange {
            buf,
            id,
            conversation,
            state: State::Ready,
        }
    }

    fn buf_len(&self) -> u32 {
        self.buf.as_ref().len().min(u32::MAX as usize) as u32
    }

    /// The next request's header, or `None` while one is on the wire or
    /// when the exchange is over. [`Exchange::payload`] follows it.
    pub fn poll_transmit(&mut self) -> Option<[u8; HEADER_LEN]> {
        if self.state != State::Ready {
            return None;
        }
        let req = self.conversation.request(self.id, self.buf_len());
        if req.flags.has_payload() && req.data_length > self.buf_len() {
            // Never a header whose payload is not there to follow it.
            self.state = State::Failed(Error::BufferTooSmall {
                need: req.data_length as usize,
            });
            return None;
        }
        self.state = State::Sent(req);
        Some(req.to_bytes())
    }

    /// What follows the last header: the request's payload, from the
    /// buffer (empty when it carries none).
    pub fn payload(&self) -> &[u8] {
        match &self.state {
            State::Sent(req) if req.flags.has_payload() => self
                .buf
                .as_ref()
                .get(..req.data_length as usize)
                .unwrap_or(&[]),
            _ => &[],
        }
    }

    fn fail(&mut self, e: Error) -> Error {
        self.state = State::Failed(e);
        e
    }

    /// A reply header arrived: where its payload goes. An error means the
    /// connection is out of step: drop it without reading the payload.
    pub fn handle_header(&mut self, header: &[u8]) -> Result<Incoming, Error> {
        let rsp = Response::parse_bytes(header)?;
        let req = match &self.state {
            State::Sent(req) if req.id == rsp.id => *req,
            _ => return Err(Error::UnexpectedReply { id: rsp.id }),
        };
        // The reply to this request came: the next one gets a new id.
        self.id = self.id.wrapping_add(1).max(1);
        let asked = Asked::of(&req);
        if let Err(p) = check_header(&asked, &rsp, self.conversation.want(&req)) {
            return Err(self.fail(Error::BadReply(asked.bad(p))));
        }
        let len = rsp.data_length;
        let skip = Incoming {
            len,
            into: Receive::Discard,
        };
        if !rsp.result.is_success() {
            // The server refused: the exchange fails, the payload (within
            // what the request offered) is skipped, the stream stays in
            // step.
            self.fail(Error::Server {
                opcode: rsp.opcode,
                result: rsp.result,
            });
            return Ok(skip);
        }
        match self.conversation.accept(&req, &rsp) {
            Ok(Accept::Payload(range)) => {
                let fits = range.len() == len as usize && range.end <= self.buf.as_ref().len();
                if !fits {
                    let p = Problem::TooLong {
                        got: len,
                        max: self.buf_len(),
                    };
                    return Err(self.fail(Error::BadReply(asked.bad(p))));
                }
                self.state = State::Reading(req, range.clone());
                Ok(Incoming {
                    len,
                    into: Receive::Own(range),
                })
            }
            Ok(Accept::Skip(next)) => {
                self.settle(req, next);
                Ok(skip)
            }
            Err(p) => {
                self.fail(Error::BadReply(asked.bad(p)));
                Ok(skip)
            }
        }
    }

    fn settle(&mut self, req: Request, next: Next) {
        self.state = match next {
            Next::Done => State::Done(req),
            Next::Ask => State::Ready,
        };
    }

    /// The payload is in the buffer: check it.
    pub fn handle_payload(&mut self) {
        let State::Reading(req, range) = &self.state else {
            return;
        };
        let (req, range) = (*req, range.clone());
        let bytes = &self.buf.as_ref()[range];
        match self.conversation.check(&req, bytes) {
            Ok(next) => self.settle(req, next),
            Err(p) => {
                self.fail(Error::BadReply(Asked::of(&req).bad(p)));
            }
        }
    }

    /// The outcome once the conversation is over: what it came to, or why
    /// not. `None` while it goes on.
    pub fn outcome(&self) -> Option<Result<C::Outcome<'_>, Error>> {
        match &self.state {
            State::Ready | State::Sent(_) | State::Reading(..) => None,
            State::Failed(e) => Some(Err(*e)),
            State::Done(req) => Some(
                self.conversation
                    .outcome(self.buf.as_ref())
                    .map_err(|p| Error::BadReply(Asked::of(req).bad(p))),
            ),
        }
    }

    /// Whether the server refused with `result`.
    pub fn refused_with(&self, result: ResultCode) -> bool {
        matches!(self.state, State::Failed(Error::Server { result: r, .. }) if r == result)
    }

    /// The conversation.
    pub fn conversation(&self) -> &C {
        &self.conversation
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

impl<B: AsRef<[u8]> + AsMut<[u8]>, C: Conversation> Replies for Exchange<B, C> {
    fn handle_header(&mut self, header: &[u8]) -> Result<Incoming, Error> {
        Exchange::handle_header(self, header)
    }
    fn handle_payload(&mut self, _now: u64, _scratch: &[u8]) {
        Exchange::handle_payload(self)
    }
    fn own_bytes_mut(&mut self) -> &mut [u8] {
        self.buf.as_mut()
    }
}
