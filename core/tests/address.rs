//! VDI addresses as users type them, and the precise error for each bad one.

use sheepdog_core::address::{
    encode_name_tag, parse_host_port, parse_vdi_address, HostPort, Snapshot, VdiAddress,
};
use sheepdog_core::error::AddressError;

fn ok(s: &str) -> VdiAddress<'_> {
    parse_vdi_address(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn err(s: &str) -> AddressError {
    parse_vdi_address(s).expect_err(s)
}

fn hp(host: &str, port: Option<u16>) -> Option<HostPort<'_>> {
    Some(HostPort { host, port })
}

#[test]
fn plain_and_at_forms() {
    assert_eq!(
        ok("alice"),
        VdiAddress {
            server: None,
            name: "alice",
            snapshot: None
        }
    );
    assert_eq!(ok("alice@snap1").snapshot, Some(Snapshot::Tag("snap1")));
    assert_eq!(ok("alice@3").snapshot, Some(Snapshot::Id(3)));
    assert_eq!(ok("alice@3a").snapshot, Some(Snapshot::Tag("3a")));
    assert_eq!(
        ok("a@b@c"),
        VdiAddress {
            server: None,
            name: "a",
            snapshot: Some(Snapshot::Tag("b@c"))
        }
    );
}

#[test]
fn qemu_legacy_forms() {
    assert_eq!(
        ok("alice:2"),
        VdiAddress {
            server: None,
            name: "alice",
            snapshot: Some(Snapshot::Id(2))
        }
    );
    assert_eq!(ok("alice:tag").snapshot, Some(Snapshot::Tag("tag")));
    assert_eq!(
        ok("10.0.0.1:7001:alice"),
        VdiAddress {
            server: hp("10.0.0.1", Some(7001)),
            name: "alice",
            snapshot: None
        }
    );
    assert_eq!(
        ok("h:7000:alice:s"),
        VdiAddress {
            server: hp("h", Some(7000)),
            name: "alice",
            snapshot: Some(Snapshot::Tag("s"))
        }
    );
    assert_eq!(err("a:b:c:d:e"), AddressError::TooManyColons);
    assert_eq!(err("h:x:alice"), AddressError::BadPort);
    assert_eq!(err(":7000:alice"), AddressError::EmptyHost);
    assert_eq!(err("alice:"), AddressError::EmptyTag);
    assert_eq!(err(":snap"), AddressError::EmptyName);
}

#[test]
fn uri_forms() {
    assert_eq!(
        ok("sheepdog://host:7001/alice#snap"),
        VdiAddress {
            server: hp("host", Some(7001)),
            name: "alice",
            snapshot: Some(Snapshot::Tag("snap"))
        }
    );
    assert_eq!(ok("sheepdog+tcp://host/alice").server, hp("host", None));
    assert_eq!(
        ok("sheepdog://[::1]:7000/v#4").server,
        hp("::1", Some(7000))
    );
    assert_eq!(
        ok("sheepdog://[::1]:7000/v#4").snapshot,
        Some(Snapshot::Id(4))
    );
    assert_eq!(ok("sheepdog:///alice").server, None);
    assert_eq!(err("http://h/alice"), AddressError::UnsupportedScheme);
    assert_eq!(
        err("sheepdog+unix:///alice?socket=/x"),
        AddressError::UnsupportedTransport
    );
    assert_eq!(err("sheepdog://host"), AddressError::MissingName);
    assert_eq!(err("sheepdog://host/"), AddressError::MissingName);
    assert_eq!(err("sheepdog://host/a/b"), AddressError::PathHasSlash);
    assert_eq!(err("sheepdog://host/a?x=1"), AddressError::UnexpectedQuery);
    assert_eq!(err("sheepdog://host:0/a"), AddressError::BadPort);
    assert_eq!(err("sheepdog://host:65536/a"), AddressError::BadPort);
    assert_eq!(err("sheepdog://[::1/a"), AddressError::UnclosedBracket);
    assert_eq!(err("sheepdog://h/a#"), AddressError::EmptyTag);
}

#[test]
fn names_tags_and_ids_have_limits() {
    let name255 = "n".repeat(255);
    assert_eq!(ok(&name255).name.len(), 255);
    assert_eq!(err(&"n".repeat(256)), AddressError::NameTooLong(256));
    assert_eq!(err(""), AddressError::EmptyName);
    assert_eq!(err("@snap"), AddressError::EmptyName);
    assert_eq!(err("alice@"), AddressError::EmptyTag);
    assert_eq!(
        err(&format!("a@{}", "t".repeat(256))),
        AddressError::TagTooLong(256)
    );
    assert_eq!(err("alice@0"), AddressError::ZeroSnapshotId);
    assert_eq!(err("alice@4294967296"), AddressError::SnapshotIdTooLarge);
    assert_eq!(
        ok("alice@4294967295").snapshot,
        Some(Snapshot::Id(u32::MAX))
    );
    assert_eq!(err("al\0ice"), AddressError::NulByte);
    for e in [
        AddressError::EmptyName,
        AddressError::NameTooLong(300),
        AddressError::BadPort,
    ] {
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn host_port_forms() {
    assert_eq!(
        parse_host_port("h"),
        Ok(HostPort {
            host: "h",
            port: None
        })
    );
    assert_eq!(
        parse_host_port("h:7002"),
        Ok(HostPort {
            host: "h",
            port: Some(7002)
        })
    );
    assert_eq!(
        parse_host_port("[::1]:7"),
        Ok(HostPort {
            host: "::1",
            port: Some(7)
        })
    );
    assert_eq!(
        parse_host_port("::1"),
        Ok(HostPort {
            host: "::1",
            port: None
        })
    );
    assert_eq!(parse_host_port(":7000"), Err(AddressError::EmptyHost));
    assert_eq!(parse_host_port("h:"), Err(AddressError::BadPort));
    assert_eq!(parse_host_port("[::1]x"), Err(AddressError::BadPort));
}

#[test]
fn name_tag_payload_is_nul_padded() {
    let mut out = [0xffu8; 512];
    encode_name_tag(b"tv", b"snap1", &mut out);
    assert_eq!(&out[..3], b"tv\0");
    assert!(out[2..256].iter().all(|&b| b == 0));
    assert_eq!(&out[256..262], b"snap1\0");
    assert!(out[261..].iter().all(|&b| b == 0));
}
