//! Request flags (PROTOCOL.md §5).

use core::fmt;
use core::ops::{BitOr, BitOrAssign};

/// The `flags` field of a request header, a set of bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flags(pub u16);

impl Flags {
    /// No flag.
    pub const NONE: Flags = Flags(0);
    /// A payload of `data_length` bytes follows the header.
    pub const WRITE: Flags = Flags(0x01);
    /// CREATE_AND_WRITE only: build the object from `cow_oid` first.
    pub const COW: Flags = Flags(0x02);
    /// Old object-cache hint, ignored by v1.0.
    pub const CACHE: Flags = Flags(0x04);
    /// "Bypass the object cache", ignored by v1.0 but sent by dog.
    pub const DIRECT: Flags = Flags(0x08);
    /// The request carries a payload and the reply returns one as long.
    pub const PIGGYBACK: Flags = Flags(0x10);
    /// tgtd I/O under a shared lock; may get INODE_INVALIDATED.
    pub const TGT: Flags = Flags(0x20);
    /// Internal: forwarded between gateways.
    pub const FWD: Flags = Flags(0x40);
    /// GET_VDI_ATTR: create the attribute.
    pub const CREAT: Flags = Flags(0x100);
    /// GET_VDI_ATTR: fail if the attribute exists.
    pub const EXCL: Flags = Flags(0x200);
    /// GET_VDI_ATTR: delete the attribute.
    pub const DEL: Flags = Flags(0x400);

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether a request with these flags carries a payload.
    pub const fn has_payload(self) -> bool {
        self.contains(Flags::WRITE)
    }

    /// These flags with `other`'s bits cleared.
    pub const fn without(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }
}

impl BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0;
    }
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#06x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_means_a_payload_follows() {
        assert!(Flags::WRITE.has_payload());
        assert!(!Flags::NONE.has_payload());
        let f = Flags::WRITE | Flags::CREAT | Flags::EXCL;
        assert!(f.contains(Flags::CREAT | Flags::EXCL));
        assert!(!f.without(Flags::WRITE).has_payload());
        assert_eq!(f.0, 0x0001 | 0x0100 | 0x0200);
    }
}
