//! Where a migration goes, behind one small trait: a Ceph pool through the
//! `rbd` command (`rbd.rs`), or a backup set in a directory (`dir.rs`).
//! The planner reads a target's state; the shipper writes each snapshot's
//! diff into it as a stream, never a temporary copy.

use std::io::Write;

use super::plan::TargetState;
use super::source::{Family, Snapshot};
use crate::cluster::attrs::Attribute;
use crate::error::CliError;

/// What a snapshot's diff starts from, as the target knows it.
pub enum From<'a> {
    /// Nothing: the diff holds every allocated object.
    Nothing,
    /// The image's snapshot of this name.
    Snapshot(&'a str),
    /// The parent's snapshot the image was cloned from.
    Origin,
}

/// A migration target.
pub trait Target: Send {
    /// How messages name the image of VDI `name`.
    fn show(&self, name: &str) -> String;

    /// What the target holds of `family`'s image.
    fn state(&mut self, family: &Family) -> Result<TargetState, CliError>;

    /// Whether the image of `name` has the snapshot `snap` (a clone's
    /// origin).
    fn has_snapshot(&mut self, name: &str, snap: &str) -> Result<bool, CliError>;

    /// Make `family`'s image, marked as its migration, empty.
    fn create(&mut self, family: &Family) -> Result<(), CliError>;

    /// Make `family`'s image a clone of `parent`'s image at its snapshot
    /// `snap`.
    fn clone_of(&mut self, family: &Family, parent: &str, snap: &str) -> Result<(), CliError>;

    /// Take the diff of snapshot `to` of `family` from `from`: `diff`
    /// writes it into the stream given (an `rbd diff v1` stream that names
    /// `from` and `to`). Returns the bytes of the stream.
    fn ship(
        &mut self,
        family: &Family,
        from: From<'_>,
        to: &Snapshot,
        diff: &mut dyn FnMut(&mut dyn Write) -> Result<(), CliError>,
    ) -> Result<u64, CliError>;

    /// The extents `(offset, length)` of the image that may differ from
    /// `base`, which a diff from `base` takes the image to hold: a killed
    /// run's writes, or a snapshot only the target has. They are sent
    /// again whole.
    fn changed_since(
        &mut self,
        family: &Family,
        base: From<'_>,
    ) -> Result<Vec<(u64, u64)>, CliError>;

    /// Snapshot `to` is shipped, and `crcs` are the checksums of its
    /// objects: from now on the target holds it (a backup set lists it in
    /// its manifest; rbd made it with the diff's last write).
    fn shipped(
        &mut self,
        family: &Family,
        from: From<'_>,
        to: &Snapshot,
        crcs: &[u32],
    ) -> Result<(), CliError>;

    /// The checksums of snapshot `to`'s objects as the target holds them
    /// (`--verify`), read back.
    fn read_back(&mut self, family: &Family, to: &Snapshot) -> Result<Vec<u32>, CliError>;

    /// The size and the checksums of the objects of snapshot `snap` of
    /// VDI `vdi`, where the target keeps them (a backup set's manifest).
    fn kept_crcs(&mut self, vdi: &str, snap: &str) -> Option<(u64, Vec<u32>)>;

    /// Remove the snapshot `snap` of `family`'s image (migrate's own,
    /// needed no more by later diffs), maybe in the background until
    /// [`Target::settle`]; one that is not there is fine. A backup set
    /// keeps it: its later diffs start from it.
    fn forget(&mut self, family: &Family, snap: &str) -> Result<(), CliError>;

    /// Wait for what the target does in the background (forgets).
    fn settle(&mut self) -> Result<(), CliError> {
        Ok(())
    }

    /// Keep `family`'s attributes (a snapshot's under its name).
    fn attributes(&mut self, family: &Family, attrs: &[Attribute]) -> Result<(), CliError>;

    /// Keep the VM state of snapshot `snap`: `write` writes its bytes.
    fn vmstate(
        &mut self,
        family: &Family,
        snap: &Snapshot,
        write: &mut dyn FnMut(&mut dyn Write) -> Result<(), CliError>,
    ) -> Result<(), CliError>;

    /// Whether the VM state of snapshot `snap` is kept already.
    fn has_vmstate(&mut self, family: &Family, snap: &Snapshot) -> Result<bool, CliError>;
}

/// The name a VDI's image or directory takes: the VDI's, when it can be
/// one (rbd refuses `/` and `@`; a directory refuses `/`, `.` and `..`).
pub fn image_name(name: &str) -> Result<&str, CliError> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '@', '\0']) {
        return Err(CliError::msg(format!(
            "{name}: the name cannot be an image or directory name on the target ('/' and '@')"
        )));
    }
    Ok(name)
}

/// An attribute value as text: as it is when it is UTF-8 (and does not
/// look like an encoded one), else `base64:` and its base64.
pub fn meta_value(value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(s) if !s.starts_with(BASE64_PREFIX) => s.to_owned(),
        _ => format!("{BASE64_PREFIX}{}", base64(value)),
    }
}

/// The prefix of an attribute value kept as base64.
pub const BASE64_PREFIX: &str = "base64:";

/// The value [`meta_value`] made, back.
pub fn meta_bytes(text: &str) -> Result<Vec<u8>, CliError> {
    match text.strip_prefix(BASE64_PREFIX) {
        Some(b) => unbase64(b)
            .ok_or_else(|| CliError::msg(format!("a {BASE64_PREFIX} value is not base64"))),
        None => Ok(text.as_bytes().to_vec()),
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
fn base64(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for chunk in b.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &x)| n | u32::from(x) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unbase64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut n = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        n = n << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((n >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_kept_as_text_or_base64_and_come_back() {
        assert_eq!(meta_value(b"alice"), "alice");
        assert_eq!(meta_value(&[0xff, 0, 1]), "base64:/wAB");
        assert_eq!(meta_value(b"base64:x"), "base64:YmFzZTY0Ong=");
        for v in [
            &b""[..],
            b"a",
            b"ab",
            b"abc",
            b"abcd",
            &[0u8, 255, 128, 7, 9][..],
        ] {
            assert_eq!(meta_bytes(&meta_value(v)).unwrap(), v);
        }
        assert!(meta_bytes("base64:!!").is_err());
    }

    #[test]
    fn names_that_cannot_be_images_are_refused() {
        assert!(image_name("vm1").is_ok());
        for bad in ["", ".", "..", "a/b", "a@b"] {
            assert!(image_name(bad).is_err(), "{bad}");
        }
    }
}
