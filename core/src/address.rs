//! VDI addresses as users type them:
//!
//! | form | example |
//! |---|---|
//! | name | `alice` |
//! | name and snapshot | `alice@before-upgrade`, `alice@3` |
//! | QEMU legacy | `alice:3`, `host:7000:alice`, `host:7000:alice:snap` |
//! | URI | `sheepdog://host:7000/alice#snap`, `sheepdog+tcp://[::1]/alice` |
//!
//! A snapshot written only with digits is a snapshot id; anything else is a
//! tag. Names and tags are 1 to 255 bytes without NUL. In the `@` form the
//! first `@` ends the name.

use crate::error::AddressError;
use crate::wire::{NAME_LEN, TAG_LEN};

/// Which snapshot of a VDI an address names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Snapshot<'a> {
    /// By tag.
    Tag(&'a str),
    /// By snapshot id (never 0).
    Id(u32),
}

/// A host and optional port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostPort<'a> {
    /// Host name or address (IPv6 without brackets).
    pub host: &'a str,
    /// Port, if one was given.
    pub port: Option<u16>,
}

/// A parsed VDI address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VdiAddress<'a> {
    /// The server, if the address names one.
    pub server: Option<HostPort<'a>>,
    /// The VDI name.
    pub name: &'a str,
    /// The snapshot, if one is named.
    pub snapshot: Option<Snapshot<'a>>,
}

/// Check a VDI name: 1 to 255 bytes, no NUL.
pub fn check_name(name: &str) -> Result<(), AddressError> {
    if name.is_empty() {
        Err(AddressError::EmptyName)
    } else if name.len() >= NAME_LEN {
        Err(AddressError::NameTooLong(name.len()))
    } else if name.as_bytes().contains(&0) {
        Err(AddressError::NulByte)
    } else {
        Ok(())
    }
}

/// Check a snapshot tag: 1 to 255 bytes, no NUL.
pub fn check_tag(tag: &str) -> Result<(), AddressError> {
    if tag.is_empty() {
        Err(AddressError::EmptyTag)
    } else if tag.len() >= TAG_LEN {
        Err(AddressError::TagTooLong(tag.len()))
    } else if tag.as_bytes().contains(&0) {
        Err(AddressError::NulByte)
    } else {
        Ok(())
    }
}

/// Parse a snapshot selector: digits are an id, anything else a tag.
pub fn parse_snapshot(s: &str) -> Result<Snapshot<'_>, AddressError> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let mut id: u32 = 0;
        for b in s.bytes() {
            id = id
                .checked_mul(10)
                .and_then(|v| v.checked_add(u32::from(b - b'0')))
                .ok_or(AddressError::SnapshotIdTooLarge)?;
        }
        if id == 0 {
            return Err(AddressError::ZeroSnapshotId);
        }
        Ok(Snapshot::Id(id))
    } else {
        check_tag(s)?;
        Ok(Snapshot::Tag(s))
    }
}

fn parse_port(s: &str) -> Result<u16, AddressError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || s.len() > 5 {
        return Err(AddressError::BadPort);
    }
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err(AddressError::BadPort),
        Ok(p) => Ok(p),
    }
}

/// Parse `host`, `host:port`, `[v6]` or `[v6]:port`.
pub fn parse_host_port(s: &str) -> Result<HostPort<'_>, AddressError> {
    if let Some(rest) = s.strip_prefix('[') {
        let close = rest.find(']').ok_or(AddressError::UnclosedBracket)?;
        let host = &rest[..close];
        if host.is_empty() {
            return Err(AddressError::EmptyHost);
        }
        let after = &rest[close + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(parse_port(p)?),
            None if after.is_empty() => None,
            None => return Err(AddressError::BadPort),
        };
        return Ok(HostPort { host, port });
    }
    let (host, port) = match s.rfind(':') {
        // More than one ':' without brackets is a bare IPv6 address.
        Some(i) if s[..i].contains(':') => (s, None),
        Some(i) => (&s[..i], Some(parse_port(&s[i + 1..])?)),
        None => (s, None),
    };
    if host.is_empty() {
        return Err(AddressError::EmptyHost);
    }
    Ok(HostPort { host, port })
}

fn with_name<'a>(
    server: Option<HostPort<'a>>,
    name: &'a str,
    snapshot: Option<&'a str>,
) -> Result<VdiAddress<'a>, AddressError> {
    check_name(name)?;
    let snapshot = match snapshot {
        Some(s) => Some(parse_snapshot(s)?),
        None => None,
    };
    Ok(VdiAddress {
        server,
        name,
        snapshot,
    })
}

fn parse_uri<'a>(scheme: &str, rest: &'a str) -> Result<VdiAddress<'a>, AddressError> {
    match scheme {
        "sheepdog" | "sheepdog+tcp" => {}
        s if s.starts_with("sheepdog+") => return Err(AddressError::UnsupportedTransport),
        _ => return Err(AddressError::UnsupportedScheme),
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => return Err(AddressError::MissingName),
    };
    let (path, fragment) = match path.find('#') {
        Some(i) => (&path[..i], Some(&path[i + 1..])),
        None => (path, None),
    };
    if path.contains('?') || fragment.is_some_and(|f| f.contains('?')) {
        return Err(AddressError::UnexpectedQuery);
    }
    if path.is_empty() {
        return Err(AddressError::MissingName);
    }
    if path.contains('/') {
        return Err(AddressError::PathHasSlash);
    }
    let server = if authority.is_empty() {
        None
    } else {
        Some(parse_host_port(authority)?)
    };
    with_name(server, path, fragment)
}

/// Parse any of the forms in the module documentation.
pub fn parse_vdi_address(s: &str) -> Result<VdiAddress<'_>, AddressError> {
    if let Some(i) = s.find("://") {
        return parse_uri(&s[..i], &s[i + 3..]);
    }
    if s.contains(':') {
        let mut parts = s.splitn(5, ':');
        let a = parts.next().unwrap_or("");
        let b = parts.next();
        let c = parts.next();
        let d = parts.next();
        if parts.next().is_some() {
            return Err(AddressError::TooManyColons);
        }
        return match (b, c, d) {
            (Some(snap), None, None) => with_name(None, a, Some(snap)),
            (Some(port), Some(name), snap) => {
                if a.is_empty() {
                    return Err(AddressError::EmptyHost);
                }
                let server = HostPort {
                    host: a,
                    port: Some(parse_port(port)?),
                };
                with_name(Some(server), name, snap)
            }
            _ => with_name(None, a, None),
        };
    }
    match s.find('@') {
        Some(i) => with_name(None, &s[..i], Some(&s[i + 1..])),
        None => with_name(None, s, None),
    }
}

/// Encode a name (and a tag, possibly empty) as the 512-byte lookup payload.
pub fn encode_name_tag(name: &[u8], tag: &[u8], out: &mut [u8; NAME_LEN + TAG_LEN]) {
    out.fill(0);
    let n = name.len().min(NAME_LEN - 1);
    out[..n].copy_from_slice(&name[..n]);
    let t = tag.len().min(TAG_LEN - 1);
    out[NAME_LEN..NAME_LEN + t].copy_from_slice(&tag[..t]);
}

/// Encode a name as the 256-byte NEW_VDI payload.
pub fn encode_name(name: &[u8], out: &mut [u8; NAME_LEN]) {
    out.fill(0);
    let n = name.len().min(NAME_LEN - 1);
    out[..n].copy_from_slice(&name[..n]);
}
