//! Fault injection: make the next N requests that match a predicate answer
//! something else than the protocol would.

use std::fmt;

use sheepdog_core::oid::Oid;
use sheepdog_core::wire::{Opcode, Request, ResultCode};

/// A predicate over requests.
pub type RequestPredicate = Box<dyn Fn(&Request) -> bool + Send>;

/// Which requests a fault applies to. Every field that is set must match.
pub struct Matcher {
    /// The opcode.
    pub opcode: Option<Opcode>,
    /// The object (object ops only).
    pub oid: Option<Oid>,
    /// The VID the request is about: the oid's VID for object ops,
    /// `base_vdi_id` for VDI ops.
    pub vid: Option<u32>,
    /// Any other condition.
    pub custom: Option<RequestPredicate>,
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Matcher")
            .field("opcode", &self.opcode)
            .field("oid", &self.oid)
            .field("vid", &self.vid)
            .field("custom", &self.custom.is_some())
            .finish()
    }
}

impl Matcher {
    /// Every request.
    pub fn any() -> Matcher {
        Matcher {
            opcode: None,
            oid: None,
            vid: None,
            custom: None,
        }
    }

    /// Requests with this opcode.
    pub fn opcode(opcode: Opcode) -> Matcher {
        Matcher {
            opcode: Some(opcode),
            ..Matcher::any()
        }
    }

    /// Requests for this object (any opcode unless narrowed).
    pub fn object(oid: Oid) -> Matcher {
        Matcher::any().oid(oid)
    }

    /// Requests satisfying `f`.
    pub fn custom(f: impl Fn(&Request) -> bool + Send + 'static) -> Matcher {
        Matcher {
            custom: Some(Box::new(f)),
            ..Matcher::any()
        }
    }

    /// Narrow to one object.
    pub fn oid(mut self, oid: Oid) -> Matcher {
        self.oid = Some(oid);
        self
    }

    /// Narrow to one VID.
    pub fn vid(mut self, vid: u32) -> Matcher {
        self.vid = Some(vid);
        self
    }

    /// Narrow to one opcode.
    pub fn with_opcode(mut self, opcode: Opcode) -> Matcher {
        self.opcode = Some(opcode);
        self
    }

    /// Whether `req` matches.
    pub fn matches(&self, req: &Request) -> bool {
        if self.opcode.is_some_and(|op| op != req.opcode) {
            return false;
        }
        if let Some(oid) = self.oid {
            if req.obj().map(|a| a.oid) != Some(oid) {
                return false;
            }
        }
        if let Some(vid) = self.vid {
            let got = match (req.obj(), req.vdi()) {
                (Some(a), _) => Some(a.oid.vid_bits()),
                (_, Some(v)) => Some(v.base_vdi_id),
                _ => None,
            };
            if got != Some(vid) {
                return false;
            }
        }
        match &self.custom {
            Some(f) => f(req),
            None => true,
        }
    }
}

/// What a matching request gets instead of its normal answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// Answer `result` (no payload) without doing anything: a transient
    /// WAIT_FOR_JOIN or HALT, NO_SPACE, EIO ...
    Fail(ResultCode),
    /// Do the operation, then answer `result` with no payload: the client
    /// cannot tell that it took effect (a lost acknowledgement).
    ApplyThenFail(ResultCode),
    /// Close the connection without doing anything (TCP wrapper only;
    /// [`Cluster::handle`](super::Cluster::handle) flags the reply).
    Disconnect,
    /// Do the operation, then close the connection without answering.
    ApplyThenDisconnect,
    /// Do the operation, send the reply's header and half its payload,
    /// then close the connection (TCP wrapper only; the pure server
    /// flags the reply).
    ApplyThenCutShort,
    /// Do the operation, then answer with `data_length` set to this many
    /// bytes, and that many bytes of payload: a reply of the wrong length.
    ApplyThenLength(u32),
}

/// A fault waiting for matching requests.
#[derive(Debug)]
pub struct Fault {
    /// Which requests.
    pub matcher: Matcher,
    /// What they get.
    pub action: FaultAction,
    /// How many more requests it applies to.
    pub remaining: u32,
}

/// The pending faults, first match wins.
#[derive(Debug, Default)]
pub struct Faults {
    list: Vec<Fault>,
}

impl Faults {
    /// Queue a fault for the next `times` matching requests.
    pub fn push(&mut self, matcher: Matcher, action: FaultAction, times: u32) {
        if times > 0 {
            self.list.push(Fault {
                matcher,
                action,
                remaining: times,
            });
        }
    }

    /// The action for `req`, consuming one use of the first matching fault.
    pub fn take(&mut self, req: &Request) -> Option<FaultAction> {
        let i = self.list.iter().position(|f| f.matcher.matches(req))?;
        let action = self.list[i].action;
        self.list[i].remaining -= 1;
        if self.list[i].remaining == 0 {
            self.list.remove(i);
        }
        Some(action)
    }

    /// Uses left over all pending faults.
    pub fn pending(&self) -> u32 {
        self.list.iter().map(|f| f.remaining).sum()
    }

    /// Drop every pending fault.
    pub fn clear(&mut self) {
        self.list.clear();
    }
}
