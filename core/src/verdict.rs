//! What the copies of one replicated object say about it, as `dog vdi
//! check` judges them (PROTOCOL.md §14.2): each copy's SHA-1 (from
//! GET_HASH) or its absence; the good copy is the one a strict majority of
//! the copies present agree on. Copies that are missing or differ from it
//! are to be repaired from it. Without a majority nothing can be repaired:
//! no copy can be trusted over another.
//!
//! The strips of an erasure-coded object ([`Verdict::of_strips`]) are
//! judged by the code itself: they are consistent when the parity the
//! data strips give is the parity stored. Missing strips are rebuilt from
//! any `d` good ones. Where they are not consistent, a strip is found bad
//! when it is the one strip without which the others agree; that needs a
//! strip to spare beyond it (`p` ≥ 2 with all strips present). With less
//! there is no telling which strip is wrong, and nothing is repaired
//! (`dog vdi check` repairs no inconsistent strips at all).

use crate::erasure::Code;
use crate::wire::DIGEST_LEN;

/// The most copies an object has (`SD_MAX_COPIES`).
pub const MAX_COPIES: usize = 31;

/// A copy's SHA-1.
pub type Digest = [u8; DIGEST_LEN];

/// A copy as the check found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Copy {
    /// Equal to the majority.
    Good,
    /// The node has none.
    Missing,
    /// Present and different from the majority, or present where no
    /// majority was found.
    Differs,
}

/// The judgement on one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Per copy, in placement order.
    pub copies: heapless::Vec<Copy, MAX_COPIES>,
    /// The copy to repair the others from: the first of the majority.
    pub source: Option<usize>,
}

impl Verdict {
    /// Judge copies given as their digests (`None`: missing). More than
    /// [`MAX_COPIES`] are judged on the first [`MAX_COPIES`].
    pub fn of(digests: &[Option<Digest>]) -> Verdict {
        let digests = &digests[..digests.len().min(MAX_COPIES)];
        let present = digests.iter().filter(|d| d.is_some()).count();
        let mut source = None;
        for (i, d) in digests.iter().enumerate() {
            let Some(d) = d else { continue };
            let agree = digests.iter().filter(|o| o.as_ref() == Some(d)).count();
            if agree * 2 > present {
                source = Some(i);
                break;
            }
        }
        let good = source.and_then(|s| digests[s]);
        let copies = digests
            .iter()
            .map(|d| match (d, good) {
                (None, _) => Copy::Missing,
                (Some(d), Some(g)) if *d == g => Copy::Good,
                (Some(_), _) => Copy::Differs,
            })
            .collect();
        Verdict { copies, source }
    }

    /// Judge the strips of an erasure-coded object: `strips[i]` is strip
    /// `i`'s bytes (`None`: missing), all the same length; `scratch` at
    /// least that long. The source, when repairable, is the first good
    /// strip: rebuild the others from the good ones.
    pub fn of_strips(code: &Code, strips: &[Option<&[u8]>], scratch: &mut [u8]) -> Verdict {
        let strips = &strips[..strips.len().min(MAX_COPIES)];
        let mut present: heapless::Vec<u8, MAX_COPIES> = heapless::Vec::new();
        for (i, s) in strips.iter().enumerate() {
            if s.is_some() {
                let _ = present.push(i as u8);
            }
        }
        let d = code.data() as usize;
        let mut bad: Option<u8> = None;
        let repairable = if present.len() < d {
            false
        } else if consistent(code, strips, &present, None, scratch) {
            true
        } else {
            let mut found = None;
            let mut count = 0;
            if present.len() > d + 1 {
                for &k in &present {
                    if consistent(code, strips, &present, Some(k), scratch) {
                        found = Some(k);
                        count += 1;
                    }
                }
            }
            if count == 1 {
                bad = found;
                true
            } else {
                false
            }
        };
        let verified = repairable || present.len() < d;
        let copies = strips
            .iter()
            .enumerate()
            .map(|(i, s)| match s {
                None => Copy::Missing,
                Some(_) if bad == Some(i as u8) || !verified => Copy::Differs,
                Some(_) => Copy::Good,
            })
            .collect::<heapless::Vec<Copy, MAX_COPIES>>();
        let source = if repairable {
            copies.iter().position(|c| *c == Copy::Good)
        } else {
            None
        };
        Verdict { copies, source }
    }

    /// Every copy is there and agrees.
    pub fn is_clean(&self) -> bool {
        self.copies.iter().all(|c| *c == Copy::Good)
    }

    /// No node has a copy.
    pub fn is_lost(&self) -> bool {
        self.copies.iter().all(|c| *c == Copy::Missing)
    }

    /// Copies to repair (missing or differing), when there is a good one.
    pub fn to_repair(&self) -> impl Iterator<Item = usize> + '_ {
        let repairable = self.source.is_some();
        self.copies
            .iter()
            .enumerate()
            .filter(move |(_, c)| repairable && **c != Copy::Good)
            .map(|(i, _)| i)
    }
}

/// Whether the strips `present` (but `without`) agree: every one past the
/// first `d` is what those `d` give.
fn consistent(
    code: &Code,
    strips: &[Option<&[u8]>],
    present: &[u8],
    without: Option<u8>,
    scratch: &mut [u8],
) -> bool {
    let d = code.data() as usize;
    let mut have: heapless::Vec<(u8, &[u8]), 16> = heapless::Vec::new();
    let mut rest: heapless::Vec<u8, MAX_COPIES> = heapless::Vec::new();
    for &i in present.iter().filter(|&&i| Some(i) != without) {
        let Some(Some(bytes)) = strips.get(i as usize) else {
            return false;
        };
        if have.len() < d {
            let _ = have.push((i, bytes));
        } else {
            let _ = rest.push(i);
        }
    }
    if have.len() < d {
        return false;
    }
    for &j in &rest {
        let Some(Some(want)) = strips.get(j as usize) else {
            return false;
        };
        let Some(out) = scratch.get_mut(..want.len()) else {
            return false;
        };
        if code.rebuild(&have, j, out).is_err() || out != *want {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Option<Digest> = Some([1; 20]);
    const B: Option<Digest> = Some([2; 20]);

    #[test]
    fn all_equal_is_clean() {
        let v = Verdict::of(&[A, A, A]);
        assert!(v.is_clean());
        assert_eq!(v.to_repair().count(), 0);
    }

    #[test]
    fn a_missing_and_a_differing_copy_are_repaired_from_the_majority() {
        let v = Verdict::of(&[B, A, None, A, A]);
        assert_eq!(v.source, Some(1));
        assert_eq!(
            v.copies.as_slice(),
            &[
                Copy::Differs,
                Copy::Good,
                Copy::Missing,
                Copy::Good,
                Copy::Good
            ]
        );
        assert_eq!(
            v.to_repair().collect::<heapless::Vec<_, 4>>().as_slice(),
            &[0, 2]
        );
    }

    #[test]
    fn a_lone_survivor_is_the_majority() {
        let v = Verdict::of(&[None, A, None]);
        assert_eq!(v.source, Some(1));
        assert_eq!(v.to_repair().count(), 2);
    }

    fn strips_of(code: &Code, object: &[u8]) -> [[u8; 1024]; 6] {
        let mut out = [[0u8; 1024]; 6];
        for (i, s) in out.iter_mut().enumerate().take(code.strips() as usize) {
            code.strip(
                object,
                i as u8,
                &mut s[..object.len() / code.data() as usize],
            )
            .unwrap();
        }
        out
    }

    fn object() -> [u8; 4096] {
        let mut o = [0u8; 4096];
        let mut x = 12345u32;
        for b in o.iter_mut() {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *b = (x >> 16) as u8;
        }
        o
    }

    #[test]
    fn strips_missing_up_to_p_are_rebuilt() {
        let code = Code::new(4, 2).unwrap();
        let o = object();
        let s = strips_of(&code, &o);
        let mut scratch = [0u8; 1024];
        let all: [Option<&[u8]>; 6] = core::array::from_fn(|i| Some(&s[i][..]));
        assert!(Verdict::of_strips(&code, &all, &mut scratch).is_clean());
        let mut two = all;
        two[1] = None;
        two[4] = None;
        let v = Verdict::of_strips(&code, &two, &mut scratch);
        assert!(v.source.is_some());
        assert_eq!(
            v.to_repair().collect::<heapless::Vec<_, 6>>().as_slice(),
            &[1, 4]
        );
        let mut three = two;
        three[0] = None;
        let v = Verdict::of_strips(&code, &three, &mut scratch);
        assert_eq!(v.source, None);
        assert_eq!(v.copies.iter().filter(|c| **c == Copy::Missing).count(), 3);
    }

    #[test]
    fn a_corrupt_strip_is_found_with_a_strip_to_spare() {
        let code = Code::new(4, 2).unwrap();
        let o = object();
        let mut s = strips_of(&code, &o);
        s[2][100] ^= 0x40;
        let mut scratch = [0u8; 1024];
        let all: [Option<&[u8]>; 6] = core::array::from_fn(|i| Some(&s[i][..]));
        let v = Verdict::of_strips(&code, &all, &mut scratch);
        assert_eq!(v.copies[2], Copy::Differs);
        assert_eq!(
            v.to_repair().collect::<heapless::Vec<_, 6>>().as_slice(),
            &[2]
        );
        // 2:1 cannot tell which strip is wrong.
        let code = Code::new(2, 1).unwrap();
        let mut s = strips_of(&code, &o[..2048]);
        s[0][7] ^= 1;
        let three: [Option<&[u8]>; 3] = core::array::from_fn(|i| Some(&s[i][..]));
        let v = Verdict::of_strips(&code, &three, &mut scratch);
        assert_eq!(v.source, None);
        assert!(v.copies.iter().all(|c| *c == Copy::Differs));
    }

    #[test]
    fn a_tie_has_no_good_copy() {
        let v = Verdict::of(&[A, B, None]);
        assert_eq!(v.source, None);
        assert_eq!(v.to_repair().count(), 0);
        assert!(!v.is_clean());
        assert!(Verdict::of(&[None, None, None]).is_lost());
        let v = Verdict::of(&[A, A, B, B]);
        assert_eq!(v.source, None);
    }
}
