//! Sheep's erasure code (PROTOCOL.md §7.4): how a gateway splits an object
//! of an erasure-coded VDI into strips, and how any `d` strips give back
//! the others.
//!
//! The code is zfec's (`lib/fec.c`): Reed-Solomon over GF(2^8) with the
//! polynomial x^8 + x^4 + x^3 + x^2 + 1 (`0x11d`), systematic. Its
//! `(d + p) × d` encoding matrix ([`Code::coefficient`]) is built as
//! `fec_new` builds it: a Vandermonde matrix whose row 0 is `[1, 0, .., 0]`
//! and whose row `r + 1` is `[α^(r·c) for column c]`, multiplied on the
//! right by the inverse of its top `d × d` square, so that the top `d` rows
//! are the identity (data strips are the data) and the bottom `p` rows make
//! the parity strips.
//!
//! An object is cut into stripes of [`STRIPE`] (512) bytes and each stripe
//! into `d` strips of `512 / d` bytes. Strip file `i` (`oid_i` on the node
//! of copy `i`, see [`placement`](crate::placement)) holds, stripe after
//! stripe, that stripe's strip `i`: `object_len / d` bytes. Parity strip
//! `d + k` of a stripe is row `d + k` of the matrix times the stripe's data
//! strips, byte by byte; so a parity strip file is that same combination of
//! the data strip files, and any `d` strip files give back any other by one
//! linear combination ([`Code::rebuild`]), as `dog vdi check` does.
//!
//! Everything is on the caller's buffers and the stack: tables are
//! constants, a [`Code`] is a small `Copy` value.

use core::fmt;

/// Bytes of a stripe (`SD_EC_DATA_STRIPE_SIZE`): every object of an
/// erasure-coded VDI is a whole number of them.
pub const STRIPE: usize = 512;
/// Most data strips (`SD_EC_MAX_STRIP`).
const MAX_DATA: usize = 16;
/// Most parity strips.
const MAX_PARITY: usize = 15;
/// Most strips of a stripe (`SD_MAX_COPIES`).
const MAX_STRIPS: usize = MAX_DATA + MAX_PARITY;
/// The field's polynomial, `"101110001"` in `lib/fec.c`.
const POLY: u16 = 0x11d;

/// `gf_exp`: `α^i` for `i` in `0..510`, twice over so that a sum of two
/// logarithms needs no reduction.
const GF_EXP: [u8; 510] = gf_exp();
/// `gf_log`: `i` such that `α^i = x`, for `x` not 0 (`GF_LOG[0]` is unused).
const GF_LOG: [u8; 256] = gf_log();

const fn gf_exp() -> [u8; 510] {
    let mut exp = [0u8; 510];
    let mut x: u16 = 1;
    let mut i = 0;
    while i < 255 {
        exp[i] = x as u8;
        exp[i + 255] = x as u8;
        x <<= 1;
        if x & 0x100 != 0 {
            x ^= POLY;
        }
        i += 1;
    }
    exp
}

const fn gf_log() -> [u8; 256] {
    let exp = gf_exp();
    let mut log = [0u8; 256];
    let mut i = 0;
    while i < 255 {
        log[exp[i] as usize] = i as u8;
        i += 1;
    }
    log
}

/// `a · b` in GF(2^8).
const fn gf_mul(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        0
    } else {
        GF_EXP[GF_LOG[a as usize] as usize + GF_LOG[b as usize] as usize]
    }
}

/// `1 / a` in GF(2^8); 0 for 0.
const fn gf_inv(a: u8) -> u8 {
    if a == 0 {
        0
    } else {
        GF_EXP[255 - GF_LOG[a as usize] as usize]
    }
}

/// The products of `c` with every byte: the row of the multiplication
/// table the byte loops look up.
fn mul_row(c: u8) -> [u8; 256] {
    let mut row = [0u8; 256];
    let mut x = 0u8;
    for slot in row.iter_mut() {
        *slot = gf_mul(c, x);
        x = x.wrapping_add(1);
    }
    row
}

/// `dst ^= c · src`, byte by byte, over the shorter of the two.
fn add_mul(dst: &mut [u8], src: &[u8], c: u8) {
    match c {
        0 => {}
        1 => dst.iter_mut().zip(src).for_each(|(d, s)| *d ^= *s),
        _ => {
            let row = mul_row(c);
            dst.iter_mut()
                .zip(src)
                .for_each(|(d, s)| *d ^= row[usize::from(*s)]);
        }
    }
}

/// A square matrix of at most [`MAX_DATA`] rows.
type Square = [[u8; MAX_DATA]; MAX_DATA];

/// The inverse of the top-left `n × n` of `m` (`n` ≤ 16), by Gauss-Jordan
/// elimination; `None` if it is singular.
const fn invert(m: &Square, n: usize) -> Option<Square> {
    let mut a = *m;
    let mut inv = [[0u8; MAX_DATA]; MAX_DATA];
    let mut i = 0;
    while i < n {
        inv[i][i] = 1;
        i += 1;
    }
    let mut col = 0;
    while col < n {
        // A row at or below the diagonal with a non-zero in this column.
        let mut pivot = col;
        while pivot < n && a[pivot][col] == 0 {
            pivot += 1;
        }
        if pivot == n {
            return None;
        }
        if pivot != col {
            let t = a[pivot];
            a[pivot] = a[col];
            a[col] = t;
            let t = inv[pivot];
            inv[pivot] = inv[col];
            inv[col] = t;
        }
        let scale = gf_inv(a[col][col]);
        let mut j = 0;
        while j < n {
            a[col][j] = gf_mul(a[col][j], scale);
            inv[col][j] = gf_mul(inv[col][j], scale);
            j += 1;
        }
        let mut row = 0;
        while row < n {
            let f = a[row][col];
            if row != col && f != 0 {
                let mut j = 0;
                while j < n {
                    a[row][j] ^= gf_mul(f, a[col][j]);
                    inv[row][j] ^= gf_mul(f, inv[col][j]);
                    j += 1;
                }
            }
            row += 1;
        }
        col += 1;
    }
    Some(inv)
}

/// Why an erasure-code operation cannot be done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErasureError {
    /// A `copy_policy` that is not `d:p` with d in {2, 4, 8, 16} and p in
    /// 1..=15. For [`Code::new`], the byte `d:p` would be written as
    /// (`(d / 2) << 4 | p`, truncated to 8 bits).
    Policy(u8),
    /// A strip index past the last strip (`d + p - 1`).
    Index(u8),
    /// An object that is not a whole number of stripes, or a strip or
    /// output of the wrong length.
    Length,
    /// The strips given cannot be solved for the others (never for
    /// distinct strips of a valid code).
    Singular,
    /// Fewer than `d` distinct strips.
    TooFewStrips,
}

impl fmt::Display for ErasureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ErasureError::Policy(policy) => write!(
                f,
                "copy policy {policy:#04x} is not an erasure code d:p with d in 2, 4, 8, 16 and p in 1..=15"
            ),
            ErasureError::Index(index) => write!(f, "strip {index} is not a strip of this code"),
            ErasureError::Length => f.write_str(
                "the object must be whole 512-byte stripes and every strip object_len / d bytes",
            ),
            ErasureError::Singular => f.write_str("the strips given cannot be decoded"),
            ErasureError::TooFewStrips => {
                f.write_str("fewer distinct strips than the code has data strips")
            }
        }
    }
}

impl core::error::Error for ErasureError {}

/// An erasure code `d:p` and its encoding matrix (`struct fec`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Code {
    d: u8,
    p: u8,
    /// `enc_matrix`: row `i` makes strip `i` from the data strips.
    matrix: [[u8; MAX_DATA]; MAX_STRIPS],
}

impl Code {
    /// The code with `d` data strips (2, 4, 8 or 16) and `p` parity strips
    /// (1 to 15), its matrix built as `fec_new(d, d + p)` builds it.
    pub const fn new(d: u8, p: u8) -> Result<Code, ErasureError> {
        let valid_d = matches!(d, 2 | 4 | 8 | 16);
        if !valid_d || p == 0 || p as usize > MAX_PARITY {
            return Err(ErasureError::Policy(((d >> 1) << 4) | (p & 0x0f)));
        }
        let (dn, pn) = (d as usize, p as usize);
        // The Vandermonde rows: row 0 is [1, 0, ..], row r + 1 is α^(r·c).
        let mut vdm = [[0u8; MAX_DATA]; MAX_STRIPS];
        vdm[0][0] = 1;
        let mut r = 0;
        while r + 1 < dn + pn {
            let mut c = 0;
            while c < dn {
                vdm[r + 1][c] = GF_EXP[(r * c) % 255];
                c += 1;
            }
            r += 1;
        }
        let mut top = [[0u8; MAX_DATA]; MAX_DATA];
        let mut i = 0;
        while i < dn {
            top[i] = vdm[i];
            i += 1;
        }
        let Some(top_inv) = invert(&top, dn) else {
            return Err(ErasureError::Singular);
        };
        let mut matrix = [[0u8; MAX_DATA]; MAX_STRIPS];
        let mut row = 0;
        while row < dn + pn {
            if row < dn {
                matrix[row][row] = 1;
            } else {
                let mut c = 0;
                while c < dn {
                    let mut acc = 0;
                    let mut k = 0;
                    while k < dn {
                        acc ^= gf_mul(vdm[row][k], top_inv[k][c]);
                        k += 1;
                    }
                    matrix[row][c] = acc;
                    c += 1;
                }
            }
            row += 1;
        }
        Ok(Code { d, p, matrix })
    }

    /// The code of a VDI's `copy_policy` (`ec_policy_to_dp`): `d` is twice
    /// the high nibble, `p` the low nibble. 0 (replication) is an error here.
    pub const fn from_policy(copy_policy: u8) -> Result<Code, ErasureError> {
        match Code::new((copy_policy >> 4) * 2, copy_policy & 0x0f) {
            Ok(code) => Ok(code),
            Err(_) => Err(ErasureError::Policy(copy_policy)),
        }
    }

    /// The `copy_policy` byte of this code.
    pub const fn policy(&self) -> u8 {
        ((self.d / 2) << 4) | self.p
    }

    /// Data strips, `d`.
    pub const fn data(&self) -> u8 {
        self.d
    }

    /// Parity strips, `p`.
    pub const fn parity(&self) -> u8 {
        self.p
    }

    /// All strips, `d + p`: the copies of an object.
    pub const fn strips(&self) -> u8 {
        self.d + self.p
    }

    /// Bytes of each strip of a stripe, `512 / d`.
    const fn strip_stride(&self) -> usize {
        STRIPE / self.d as usize
    }

    /// Bytes of each strip file of an object of `object_len` bytes (a
    /// multiple of 512): `object_len / d`.
    pub const fn strip_len(&self, object_len: usize) -> usize {
        object_len / self.d as usize
    }

    /// Entry (`row`, `col`) of the encoding matrix: how much of data strip
    /// `col` strip `row` holds. 0 outside the `(d + p) × d` matrix.
    pub const fn coefficient(&self, row: u8, col: u8) -> u8 {
        if row < self.strips() && col < self.d {
            self.matrix[row as usize][col as usize]
        } else {
            0
        }
    }

    /// Strip `index` (data or parity) of a whole object, as the gateway
    /// writes it: `out.len()` must be `object.len() / d` and `object.len()`
    /// a multiple of 512.
    pub fn strip(&self, object: &[u8], index: u8, out: &mut [u8]) -> Result<(), ErasureError> {
        let row = self
            .matrix
            .get(usize::from(index))
            .filter(|_| index < self.strips())
            .ok_or(ErasureError::Index(index))?;
        if object.len() % STRIPE != 0 || out.len() != self.strip_len(object.len()) {
            return Err(ErasureError::Length);
        }
        let stride = self.strip_stride();
        if index < self.d {
            for (stripe, dst) in object
                .chunks_exact(STRIPE)
                .zip(out.chunks_exact_mut(stride))
            {
                let src = stripe
                    .chunks_exact(stride)
                    .nth(usize::from(index))
                    .ok_or(ErasureError::Length)?;
                dst.copy_from_slice(src);
            }
            return Ok(());
        }
        out.fill(0);
        let coefficients = row.iter().take(usize::from(self.d)).copied();
        for (col, c) in coefficients.enumerate().filter(|&(_, c)| c != 0) {
            let mul = mul_row(c);
            for (stripe, dst) in object
                .chunks_exact(STRIPE)
                .zip(out.chunks_exact_mut(stride))
            {
                if let Some(src) = stripe.chunks_exact(stride).nth(col) {
                    dst.iter_mut()
                        .zip(src)
                        .for_each(|(d, s)| *d ^= mul[usize::from(*s)]);
                }
            }
        }
        Ok(())
    }

    /// Rebuilds strip `want` (data or parity) from `d` distinct strips
    /// `have`, each `(strip index, strip bytes)`, all as long as `out` (whole
    /// strip files, or the same range of each). `have` may be in any order;
    /// of more than `d`, the first `d` distinct ones are used, and if `want`
    /// is among them it is copied. Every entry is checked.
    pub fn rebuild(
        &self,
        have: &[(u8, &[u8])],
        want: u8,
        out: &mut [u8],
    ) -> Result<(), ErasureError> {
        if want >= self.strips() {
            return Err(ErasureError::Index(want));
        }
        for &(index, bytes) in have {
            if index >= self.strips() {
                return Err(ErasureError::Index(index));
            }
            if bytes.len() != out.len() {
                return Err(ErasureError::Length);
            }
        }
        if let Some(&(_, bytes)) = have.iter().find(|&&(index, _)| index == want) {
            out.copy_from_slice(bytes);
            return Ok(());
        }
        // The first d distinct strips, and the rows that made them.
        let d = usize::from(self.d);
        let mut indexes = [0u8; MAX_DATA];
        let mut strips: [&[u8]; MAX_DATA] = [&[]; MAX_DATA];
        let mut rows: Square = [[0u8; MAX_DATA]; MAX_DATA];
        let mut n = 0;
        for &(index, bytes) in have {
            if n == d {
                break;
            }
            if indexes.iter().take(n).any(|&i| i == index) {
                continue;
            }
            let (Some(slot), Some(strip), Some(row), Some(source)) = (
                indexes.get_mut(n),
                strips.get_mut(n),
                rows.get_mut(n),
                self.matrix.get(usize::from(index)),
            ) else {
                return Err(ErasureError::Index(index));
            };
            *slot = index;
            *strip = bytes;
            *row = *source;
            n += 1;
        }
        if n < d {
            return Err(ErasureError::TooFewStrips);
        }
        // strips = rows × data, so data = rows⁻¹ × strips and strip `want`
        // = matrix[want] × rows⁻¹ × strips.
        let decode = invert(&rows, d).ok_or(ErasureError::Singular)?;
        let target = self
            .matrix
            .get(usize::from(want))
            .ok_or(ErasureError::Index(want))?;
        out.fill(0);
        for (k, strip) in strips.iter().take(d).enumerate() {
            let c = target
                .iter()
                .zip(decode.iter())
                .take(d)
                .fold(0u8, |acc, (&t, dec)| {
                    acc ^ gf_mul(t, dec.get(k).copied().unwrap_or(0))
                });
            add_mul(out, strip, c);
        }
        Ok(())
    }

    /// Joins the `d` data strips (strip files 0..d in order, each
    /// `object.len() / d` bytes) back into the object; `object.len()` must
    /// be a multiple of 512.
    pub fn join(&self, data: &[&[u8]], object: &mut [u8]) -> Result<(), ErasureError> {
        let d = usize::from(self.d);
        if data.len() < d {
            return Err(ErasureError::TooFewStrips);
        }
        let len = self.strip_len(object.len());
        if data.len() != d || object.len() % STRIPE != 0 || data.iter().any(|s| s.len() != len) {
            return Err(ErasureError::Length);
        }
        let stride = self.strip_stride();
        for (col, strip) in data.iter().enumerate() {
            for (stripe, src) in object
                .chunks_exact_mut(STRIPE)
                .zip(strip.chunks_exact(stride))
            {
                if let Some(dst) = stripe.chunks_exact_mut(stride).nth(col) {
                    dst.copy_from_slice(src);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::vec;
    use std::vec::Vec;

    use super::*;
    use crate::hash::{fnv1a64_update, FNV1A64_OFFSET};

    /// The first 1024 bytes (two stripes) of a 4 MiB object written to a
    /// 2:1 VDI of a Sheepdog 1.0 cluster (oid 003933f900000000).
    const OBJECT: &str = concat!(
        "52f22665a60c12d289185d950ee8813609166f6b113d178d6c0fd3901ff239a1a095f20f9395650cf9380b8edb224a6b",
        "248a1e924e8fd0ae2e1a9492a3305f188cb610900f9e347fae886dc6507795ec745c4c3fcb2eb2c73e14934c867ee057",
        "ba72499bfa121e836b2ac15726ee7d6b0af6ab13c38e92cae0d15057b159987f94cc7411d717f14579b2aa100fbbb34f",
        "a593feaed27248b762e3ab5805f0765a2b9c1d7e0f37c44921bd3f6564eadf7f142a72668c47e223d16edd8c47b46afc",
        "5baee261f53b26152d263ba83b037cd4962e434801256b885e9c9051f320b0db83f39ea7adbd0d74e6dec7f3dfaecc8f",
        "646566641a7ba2660f3011fc3570291c57990d1a0091268919f25d9d0612df359d6026a240f4589a5d791f1dd97cfefa",
        "777a7b4f15241abf57bd437ad4b129840534f3f3875c25b08bea06c2874cfaa4dd17b2d842845de82a5bc539888ac780",
        "54a2399ccfc9fcc2da31ce3dd166bdcd3a33847e5bbb07fd07ca47784231b19af45872ceefb9fc59f4f95d14381a3a78",
        "3256347b9ffce69cd7007ae8a758cca415d5a91ee863c8b6c0337ae32d6fcaa25516cdf2f8b8657666bef215b9282bfe",
        "20072697e777cea7259cd398fa79a8ef59278c8c210503ccf8b9a61a86bfef236ffcdf31d3df360740364a803dc39653",
        "428b6bd5210fe8bd5ae575a995d0e7846bd3eae080218826868204df70c62e9b01c6cc262c24799eb91e8e0f53ae8487",
        "8e7bc8c61be28f0e3f30460ac51981738f07c2e4e91071539cf9819b8333b146738288ce7a81f13fb285e0e0f1ed42ec",
        "8fe4f133d772236a1f64715012ab3d6d1236ab4dc81fe5c627f0b7a4a95d2440e223f77738bff31865e27c29fdaad539",
        "29b46efe8367566b325b5117b85d04568d7570b4046254849f4b83f5101cfcebc93af8e01a1543450ae7c72e45c121d1",
        "6cd9e9add1f242672689eb83927eb35316470eccb02e6ce51244f004a216cd42159bdb381143dc1f740256fe8d6aedea",
        "449f210b86b53df01cf829430c2e33ee4fa04e87c2344a7280ac2d4558cd04fe40090304bb818dfa3083793eef721ba8",
        "d1a66ea87e8bd5e364f8814eb037fb3a5732d5e1b4baa22367fd58fb0dd6210312a0bde1416e290e15aad761de81abf8",
        "48993eb14b0b752f28447200435df654f8fc8c523e08f7e14f375b2e00556115794780a7333f81c6011743d116246696",
        "0a64054c4da13b1595f587dac027a8e4b7c8e19863c353b8fc7e2648b99ea4250bd3d5b7e483a06dbbb3cf8123e886c0",
        "8191d5d0cd04d3af95cce4b6aef4b1a43a15070a22a35cf51a60d5738e0ca004a088ae3e7d430074cc11bfee80e58917",
        "a88610bebc7940cf13d8433cbac1343bbda6f9757ed861137ae9af49c40b9da1a4321399255441a6beb14d9f9122037b",
        "0f7c44f8ac19b137ac7d4ab584497677",
    );
    /// The first 512 bytes of the strip files `003933f900000000_0`, `_1`
    /// and `_2` the three nodes stored for that object.
    const STRIP_0: &str = concat!(
        "52f22665a60c12d289185d950ee8813609166f6b113d178d6c0fd3901ff239a1a095f20f9395650cf9380b8edb224a6b",
        "248a1e924e8fd0ae2e1a9492a3305f188cb610900f9e347fae886dc6507795ec745c4c3fcb2eb2c73e14934c867ee057",
        "ba72499bfa121e836b2ac15726ee7d6b0af6ab13c38e92cae0d15057b159987f94cc7411d717f14579b2aa100fbbb34f",
        "a593feaed27248b762e3ab5805f0765a2b9c1d7e0f37c44921bd3f6564eadf7f142a72668c47e223d16edd8c47b46afc",
        "5baee261f53b26152d263ba83b037cd4962e434801256b885e9c9051f320b0db83f39ea7adbd0d74e6dec7f3dfaecc8f",
        "646566641a7ba2660f3011fc3570291c01c6cc262c24799eb91e8e0f53ae84878e7bc8c61be28f0e3f30460ac5198173",
        "8f07c2e4e91071539cf9819b8333b146738288ce7a81f13fb285e0e0f1ed42ec8fe4f133d772236a1f64715012ab3d6d",
        "1236ab4dc81fe5c627f0b7a4a95d2440e223f77738bff31865e27c29fdaad53929b46efe8367566b325b5117b85d0456",
        "8d7570b4046254849f4b83f5101cfcebc93af8e01a1543450ae7c72e45c121d16cd9e9add1f242672689eb83927eb353",
        "16470eccb02e6ce51244f004a216cd42159bdb381143dc1f740256fe8d6aedea449f210b86b53df01cf829430c2e33ee",
        "4fa04e87c2344a7280ac2d4558cd04fe40090304bb818dfa3083793eef721ba8",
    );
    const STRIP_1: &str = concat!(
        "57990d1a0091268919f25d9d0612df359d6026a240f4589a5d791f1dd97cfefa777a7b4f15241abf57bd437ad4b12984",
        "0534f3f3875c25b08bea06c2874cfaa4dd17b2d842845de82a5bc539888ac78054a2399ccfc9fcc2da31ce3dd166bdcd",
        "3a33847e5bbb07fd07ca47784231b19af45872ceefb9fc59f4f95d14381a3a783256347b9ffce69cd7007ae8a758cca4",
        "15d5a91ee863c8b6c0337ae32d6fcaa25516cdf2f8b8657666bef215b9282bfe20072697e777cea7259cd398fa79a8ef",
        "59278c8c210503ccf8b9a61a86bfef236ffcdf31d3df360740364a803dc39653428b6bd5210fe8bd5ae575a995d0e784",
        "6bd3eae080218826868204df70c62e9bd1a66ea87e8bd5e364f8814eb037fb3a5732d5e1b4baa22367fd58fb0dd62103",
        "12a0bde1416e290e15aad761de81abf848993eb14b0b752f28447200435df654f8fc8c523e08f7e14f375b2e00556115",
        "794780a7333f81c6011743d1162466960a64054c4da13b1595f587dac027a8e4b7c8e19863c353b8fc7e2648b99ea425",
        "0bd3d5b7e483a06dbbb3cf8123e886c08191d5d0cd04d3af95cce4b6aef4b1a43a15070a22a35cf51a60d5738e0ca004",
        "a088ae3e7d430074cc11bfee80e58917a88610bebc7940cf13d8433cbac1343bbda6f9757ed861137ae9af49c40b9da1",
        "a4321399255441a6beb14d9f9122037b0f7c44f8ac19b137ac7d4ab584497677",
    );
    const STRIP_2: &str = concat!(
        "5824709bf72b7a64b4d15d851e013d303cfafde4b3b289a30ee356978ef3aa171356fd8f82ea9b77b82f9b7bc5198ca8",
        "66ebd950c134279279e7ad32ebc8087d2ee9490095aae64cbb332025fd90313434bda664c3fd2ecdeb5e29ae284e5a7e",
        "a7f0ce4ca55d2c7fb3f7d009ee4df894ebb704b49be04ef1c8814ad1bedfc171c5e5f4c547dcdfea38cb17fd42604d84",
        "d81f50d3a65055b53b5e143355d313b7d795a07bfc349b37afbbb885c3732a607c70da995a27ba362497c1a42033f3da",
        "5fa13ea640476cba9a051cd15c664727799766bab8ccd18b62d539ee72fbfcd61c036943a8c4dafb83a8be474b529a99",
        "7a14637133cff6e600493bbabf01270fbc06952788673c641ecf908d88817ae021e9f2885852d5548fb77af5489adc93",
        "a8543ceea4ecc1e9935f2d72394a852705b4f9301888e41f9b1ad93d8890378161d40bf118869661bfc225ac364a859d",
        "c4d4fd84235f2dc66b23424ecaafa0f12fad0e01d2837e0298cc97d287ad2f9e084c6d325e325cd0b311bfa9bac659b0",
        "9c2427b2d9bda14bd7a61b1d76e908bd5971a280a9377e8c29b181038eab1c3bc05c28fe2a507e5e5e46977eaa9a95fd",
        "67c4533537f4b4dab3ee6ecde6ed45e872a150295637f9a2baab7c67e3214255abed8cf76b6f852bd0da385781647270",
        "8499f4bb11f45cc7fc96edecd70e0ae9dee38de195acf57d15621f353904c10b",
    );

    fn unhex(s: &str) -> Vec<u8> {
        assert_eq!(s.len() % 2, 0);
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Deterministic bytes from a 64-bit LCG.
    fn lcg_bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed;
        (0..len)
            .map(|_| {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (x >> 56) as u8
            })
            .collect()
    }

    /// Every strip of `object`.
    fn all_strips(code: &Code, object: &[u8]) -> Vec<Vec<u8>> {
        (0..code.strips())
            .map(|i| {
                let mut s = vec![0u8; code.strip_len(object.len())];
                code.strip(object, i, &mut s).unwrap();
                s
            })
            .collect()
    }

    #[test]
    fn field_tables() {
        // α^8 = x^4 + x^3 + x^2 + 1.
        assert_eq!(GF_EXP[8], 0x1d);
        assert_eq!(GF_EXP[255], 1);
        for a in 1..=255u8 {
            assert_eq!(GF_EXP[usize::from(GF_LOG[usize::from(a)])], a);
            assert_eq!(gf_mul(a, gf_inv(a)), 1);
            assert_eq!(gf_mul(a, 1), a);
            assert_eq!(gf_mul(a, 0), 0);
        }
        assert_eq!(gf_mul(3, 0x80), 0x80 ^ 0x1d);
    }

    #[test]
    fn matrices_match_fec_new() {
        // FNV-1a of every `enc_matrix` of lib/fec.c's fec_new(d, d + p),
        // d in 2, 4, 8, 16 and p in 1..=15, row after row, as printed by
        // the C code.
        let mut h = FNV1A64_OFFSET;
        for d in [2u8, 4, 8, 16] {
            for p in 1..=15u8 {
                let code = Code::new(d, p).unwrap();
                for row in 0..d + p {
                    for col in 0..d {
                        h = fnv1a64_update(h, &[code.coefficient(row, col)]);
                    }
                }
            }
        }
        assert_eq!(h, 0x733f_91da_784c_d617);
        // Two parity rows of fec_new(4, 6) and of fec_new(2, 3).
        let c42 = Code::new(4, 2).unwrap();
        let rows: Vec<u8> = (4..6)
            .flat_map(|r| (0..4).map(move |c| (r, c)))
            .map(|(r, c)| c42.coefficient(r, c))
            .collect();
        assert_eq!(rows, [119, 64, 56, 14, 199, 167, 13, 108]);
        let c21 = Code::from_policy(0x11).unwrap();
        assert_eq!((c21.coefficient(2, 0), c21.coefficient(2, 1)), (3, 2));
    }

    #[test]
    fn matrix_top_is_identity() {
        for d in [2u8, 4, 8, 16] {
            for p in 1..=15u8 {
                let code = Code::new(d, p).unwrap();
                assert_eq!((code.data(), code.parity(), code.strips()), (d, p, d + p));
                for row in 0..d {
                    for col in 0..d {
                        assert_eq!(code.coefficient(row, col), u8::from(row == col));
                    }
                }
                // Outside the matrix: 0.
                assert_eq!(code.coefficient(d + p, 0), 0);
                assert_eq!(code.coefficient(0, d), 0);
                assert_eq!(Code::from_policy(code.policy()), Ok(code));
            }
        }
    }

    #[test]
    fn real_2_1_strips() {
        let object = unhex(OBJECT);
        let code = Code::from_policy(0x11).unwrap();
        assert_eq!(code.strip_len(object.len()), 512);
        for (i, want) in [STRIP_0, STRIP_1, STRIP_2].into_iter().enumerate() {
            let mut out = [0u8; 512];
            code.strip(&object, i as u8, &mut out).unwrap();
            assert_eq!(out[..], unhex(want)[..], "strip {i}");
        }
        // Strip 2 = 3·strip 0 ⊕ 2·strip 1.
        let (s0, s1, s2) = (unhex(STRIP_0), unhex(STRIP_1), unhex(STRIP_2));
        for k in 0..512 {
            assert_eq!(s2[k], gf_mul(3, s0[k]) ^ gf_mul(2, s1[k]));
        }
    }

    #[test]
    fn real_2_1_rebuild() {
        let code = Code::from_policy(0x11).unwrap();
        let strips = [unhex(STRIP_0), unhex(STRIP_1), unhex(STRIP_2)];
        for want in 0..3u8 {
            let others: Vec<u8> = (0..3u8).filter(|&i| i != want).collect();
            for order in [[others[0], others[1]], [others[1], others[0]]] {
                let have: Vec<(u8, &[u8])> = order
                    .iter()
                    .map(|&i| (i, &strips[usize::from(i)][..]))
                    .collect();
                let mut out = [0u8; 512];
                code.rebuild(&have, want, &mut out).unwrap();
                assert_eq!(
                    out[..],
                    strips[usize::from(want)][..],
                    "strip {want} from {order:?}"
                );
                // Any range of the same bytes of each strip file.
                let part: Vec<(u8, &[u8])> = have.iter().map(|&(i, s)| (i, &s[100..300])).collect();
                let mut out = [0u8; 200];
                code.rebuild(&part, want, &mut out).unwrap();
                assert_eq!(out[..], strips[usize::from(want)][100..300]);
            }
        }
    }

    #[test]
    fn real_2_1_join() {
        let code = Code::from_policy(0x11).unwrap();
        let (s0, s1) = (unhex(STRIP_0), unhex(STRIP_1));
        let mut object = [0u8; 1024];
        code.join(&[&s0, &s1], &mut object).unwrap();
        assert_eq!(object[..], unhex(OBJECT)[..]);
    }

    /// Rebuilds every strip from the `d` strips of `mask` (in a shuffled
    /// order) and checks it.
    fn check_from(code: &Code, strips: &[Vec<u8>], mask: u32, shuffle: u64) {
        let mut have: Vec<(u8, &[u8])> = (0..code.strips())
            .filter(|&i| mask & (1 << i) != 0)
            .map(|i| (i, &strips[usize::from(i)][..]))
            .collect();
        assert_eq!(have.len(), usize::from(code.data()));
        let n = have.len();
        have.rotate_left((shuffle as usize) % n);
        if shuffle & 1 == 1 {
            have.reverse();
        }
        let mut out = vec![0u8; strips[0].len()];
        for want in 0..code.strips() {
            out.fill(0xa5);
            code.rebuild(&have, want, &mut out).unwrap();
            assert_eq!(
                out,
                strips[usize::from(want)],
                "{code:?}: strip {want} from {mask:#x}"
            );
        }
    }

    /// Every choice of `d` strips of `d:p`, hence every loss of up to `p`.
    fn every_loss(d: u8, p: u8, stripes: usize) {
        let code = Code::new(d, p).unwrap();
        let object = lcg_bytes(u64::from(code.policy()), stripes * STRIPE);
        let strips = all_strips(&code, &object);
        let data: Vec<&[u8]> = strips[..usize::from(d)].iter().map(|s| &s[..]).collect();
        let mut joined = vec![0u8; object.len()];
        code.join(&data, &mut joined).unwrap();
        assert_eq!(joined, object);
        let mut tried = 0;
        for mask in 0u32..1 << code.strips() {
            if mask.count_ones() == u32::from(d) {
                check_from(&code, &strips, mask, u64::from(mask));
                tried += 1;
            }
        }
        assert!(tried > 0);
    }

    #[test]
    fn every_loss_4_2() {
        every_loss(4, 2, 3);
    }

    #[test]
    fn every_loss_8_3() {
        every_loss(8, 3, 2);
    }

    #[test]
    fn losses_16_15() {
        // C(31, 16) choices are too many: the edge cases and 200 drawn by
        // an LCG.
        let code = Code::new(16, 15).unwrap();
        let object = lcg_bytes(7, 2 * STRIPE);
        let strips = all_strips(&code, &object);
        let all = (1u32 << 31) - 1;
        let mut masks = vec![0xffff, 0xffff << 15, 0x7fff_0001, 0x5555_5555 & all];
        let mut x = 1u64;
        while masks.len() < 204 {
            // Sixteen distinct strips of 31.
            let mut mask = 0u32;
            while mask.count_ones() < 16 {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                mask |= 1 << ((x >> 33) % 31);
            }
            masks.push(mask);
        }
        for (i, &mask) in masks.iter().enumerate() {
            check_from(&code, &strips, mask, i as u64);
        }
    }

    #[test]
    fn bad_policies() {
        for policy in [0x00, 0x10, 0x01, 0x31, 0x51, 0x91, 0xf1, 0x20] {
            assert_eq!(Code::from_policy(policy), Err(ErasureError::Policy(policy)));
        }
        for policy in [0x11, 0x21, 0x41, 0x81, 0x1f, 0x8f, 0x23] {
            assert_eq!(Code::from_policy(policy).unwrap().policy(), policy);
        }
        assert_eq!(Code::new(6, 1), Err(ErasureError::Policy(0x31)));
        assert_eq!(Code::new(2, 0), Err(ErasureError::Policy(0x10)));
        assert!(Code::new(3, 1).is_err());
        assert!(Code::new(2, 16).is_err());
        assert!(Code::new(0, 0).is_err());
        assert!(Code::new(255, 255).is_err());
        for d in 0..=255u8 {
            for p in [0, 1, 15, 16, 255] {
                let ok = matches!(d, 2 | 4 | 8 | 16) && (1..=15).contains(&p);
                assert_eq!(Code::new(d, p).is_ok(), ok);
            }
        }
    }

    #[test]
    fn wrong_lengths() {
        let code = Code::new(4, 2).unwrap();
        let object = lcg_bytes(1, 1024);
        let mut out = [0u8; 256];
        assert_eq!(
            code.strip(&object[..1000], 0, &mut out),
            Err(ErasureError::Length)
        );
        assert_eq!(
            code.strip(&object, 0, &mut out[..255]),
            Err(ErasureError::Length)
        );
        assert_eq!(
            code.strip(&object, 5, &mut [0u8; 512]),
            Err(ErasureError::Length)
        );
        let strips = all_strips(&code, &object);
        let mut have: Vec<(u8, &[u8])> = (0..4u8)
            .map(|i| (i + 1, &strips[usize::from(i) + 1][..]))
            .collect();
        assert_eq!(
            code.rebuild(&have, 0, &mut out[..100]),
            Err(ErasureError::Length)
        );
        have[2].1 = &strips[3][..255];
        assert_eq!(code.rebuild(&have, 0, &mut out), Err(ErasureError::Length));
        let data: Vec<&[u8]> = strips[..4].iter().map(|s| &s[..]).collect();
        let mut joined = [0u8; 1024];
        assert_eq!(
            code.join(&data, &mut joined[..1000]),
            Err(ErasureError::Length)
        );
        assert_eq!(code.join(&data, &mut [0u8; 512]), Err(ErasureError::Length));
        let five: Vec<&[u8]> = strips[..5].iter().map(|s| &s[..]).collect();
        assert_eq!(code.join(&five, &mut joined), Err(ErasureError::Length));
        assert_eq!(
            code.join(&data[..3], &mut joined),
            Err(ErasureError::TooFewStrips)
        );
        // Empty objects are whole stripes: nothing to do.
        assert_eq!(code.strip(&[], 4, &mut []), Ok(()));
        assert_eq!(code.join(&[&[], &[], &[], &[]], &mut []), Ok(()));
    }

    #[test]
    fn bad_indexes() {
        let code = Code::from_policy(0x11).unwrap();
        let object = lcg_bytes(2, 512);
        let strips = all_strips(&code, &object);
        let mut out = [0u8; 256];
        assert_eq!(
            code.strip(&object, 3, &mut out),
            Err(ErasureError::Index(3))
        );
        assert_eq!(
            code.strip(&object, 255, &mut out),
            Err(ErasureError::Index(255))
        );
        let have: [(u8, &[u8]); 2] = [(0, &strips[0]), (1, &strips[1])];
        assert_eq!(
            code.rebuild(&have, 3, &mut out),
            Err(ErasureError::Index(3))
        );
        let have: [(u8, &[u8]); 3] = [(0, &strips[0]), (200, &strips[1]), (2, &strips[2])];
        assert_eq!(
            code.rebuild(&have, 1, &mut out),
            Err(ErasureError::Index(200))
        );
    }

    #[test]
    fn too_few_and_duplicated_strips() {
        let code = Code::new(4, 2).unwrap();
        let object = lcg_bytes(3, 1536);
        let strips = all_strips(&code, &object);
        let s = |i: usize| &strips[i][..];
        let mut out = vec![0u8; 384];
        assert_eq!(
            code.rebuild(&[], 0, &mut out),
            Err(ErasureError::TooFewStrips)
        );
        let three = [(1, s(1)), (4, s(4)), (5, s(5))];
        assert_eq!(
            code.rebuild(&three, 0, &mut out),
            Err(ErasureError::TooFewStrips)
        );
        let dup = [(1, s(1)), (4, s(4)), (4, s(4)), (5, s(5)), (1, s(1))];
        assert_eq!(
            code.rebuild(&dup, 0, &mut out),
            Err(ErasureError::TooFewStrips)
        );
        // Duplicates are skipped; four distinct ones are enough.
        let enough = [
            (5, s(5)),
            (5, s(5)),
            (1, s(1)),
            (4, s(4)),
            (1, s(1)),
            (2, s(2)),
            (3, s(3)),
        ];
        for want in [0u8, 3] {
            code.rebuild(&enough, want, &mut out).unwrap();
            assert_eq!(out, strips[usize::from(want)]);
        }
        // A strip that is there is copied.
        code.rebuild(&[(2, s(2))], 2, &mut out).unwrap();
        assert_eq!(out, strips[2]);
    }

    #[test]
    fn errors_display() {
        assert_eq!(
            std::format!("{}", ErasureError::Policy(0x31)),
            "copy policy 0x31 is not an erasure code d:p with d in 2, 4, 8, 16 and p in 1..=15"
        );
        assert_eq!(
            std::format!("{}", ErasureError::Index(3)),
            "strip 3 is not a strip of this code"
        );
    }
}
