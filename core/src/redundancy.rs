//! Copies and erasure codes (PROTOCOL.md §7.4).

use core::fmt;

use crate::error::SizeError;

/// Largest number of copies.
pub const MAX_COPIES: u8 = 31;

/// How a VDI's data is made redundant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Redundancy {
    /// Whatever the cluster's default is (copies 0 on the wire).
    ClusterDefault,
    /// Plain replication with this many copies.
    Copies(u8),
    /// Erasure coding with `data` strips and `parity` strips.
    ErasureCode {
        /// 2, 4, 8 or 16.
        data: u8,
        /// 1 to 15.
        parity: u8,
    },
}

impl Redundancy {
    /// Replication with `n` copies, 1 to 31.
    pub const fn copies(n: u8) -> Result<Redundancy, SizeError> {
        if n == 0 || n > MAX_COPIES {
            Err(SizeError::BadCopies(n))
        } else {
            Ok(Redundancy::Copies(n))
        }
    }

    /// Erasure code `data:parity`.
    pub const fn erasure_code(data: u8, parity: u8) -> Result<Redundancy, SizeError> {
        let data_ok = matches!(data, 2 | 4 | 8 | 16);
        if !data_ok || parity == 0 || parity > 15 || data + parity > MAX_COPIES {
            Err(SizeError::BadErasureCode { data, parity })
        } else {
            Ok(Redundancy::ErasureCode { data, parity })
        }
    }

    /// From the `nr_copies` and `copy_policy` of an inode or NEW_VDI.
    pub const fn from_wire(nr_copies: u8, copy_policy: u8) -> Redundancy {
        if copy_policy != 0 {
            Redundancy::ErasureCode {
                data: (copy_policy >> 4) * 2,
                parity: copy_policy & 0x0f,
            }
        } else if nr_copies == 0 {
            Redundancy::ClusterDefault
        } else {
            Redundancy::Copies(nr_copies)
        }
    }

    /// `(copies, copy_policy)` as NEW_VDI sends them.
    pub const fn to_wire(self) -> (u8, u8) {
        match self {
            Redundancy::ClusterDefault => (0, 0),
            Redundancy::Copies(n) => (n, 0),
            Redundancy::ErasureCode { data, parity } => (data + parity, ((data / 2) << 4) | parity),
        }
    }
}

impl fmt::Display for Redundancy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Redundancy::ClusterDefault => f.write_str("default"),
            Redundancy::Copies(n) => write!(f, "{n}"),
            Redundancy::ErasureCode { data, parity } => write!(f, "{data}:{parity}"),
        }
    }
}
