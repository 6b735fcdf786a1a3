//! Properties of the sheepdog-core decoders, checked on arbitrary bytes.
//!
//! Both entry points take any byte string and panic as soon as a property
//! does not hold, so that the same code serves the cargo-fuzz targets in
//! `tests/fuzz` and the deterministic smoke test `tests/fuzz_smoke.rs`:
//!
//! - [`decode`] feeds the bytes to every decoder of the crate (headers,
//!   inode header, index, VDI bitmap, addresses, object geometry, object ids,
//!   result codes and opcodes). None may panic, and each answer must agree
//!   with the bytes it was decoded from.
//! - [`roundtrip`] uses the bytes as a source of choices to build a request,
//!   a response and an inode header field by field, emits each and parses
//!   it back: the value must come back unchanged, whatever the bytes that
//!   the layout leaves unread hold.

use std::cell::RefCell;
use std::ops::Range;

use arbitrary::Unstructured;
use sheepdog_core::address::{
    check_name, check_tag, encode_name_tag, parse_host_port, parse_snapshot, parse_vdi_address,
    HostPort, Snapshot,
};
use sheepdog_core::bitmap::VdiBitmap;
use sheepdog_core::error::DecodeError;
use sheepdog_core::hash::vid_hash;
use sheepdog_core::index::IndexView;
use sheepdog_core::inode::{
    self, trim_nul, InodeHeader, InodeRange, HEADER_AND_INDEX_LEN, HEADER_FIELDS_LEN,
    INDEX_ENTRY_LEN, INDEX_OFFSET, LOOKUP_LEN,
};
use sheepdog_core::object_size::{
    ObjectSize, MAX_BLOCK_SIZE_SHIFT, MAX_DATA_OBJS, MIN_BLOCK_SIZE_SHIFT,
};
use sheepdog_core::oid::{Oid, OidKind, Vid, NR_VDIS, OID_VID_MASK, VID_SHIFT};
use sheepdog_core::redundancy::Redundancy;
use sheepdog_core::wire::{
    ArgsKind, Flags, ObjArgs, Opcode, Request, RequestArgs, Response, ResponseArgs, ResultClass,
    ResultCode, VdiArgs, HEADER_LEN, NAME_LEN, VDI_BITMAP_LEN,
};

/// Feed `data` to every decoder of sheepdog-core and check what comes out.
///
/// Panics if a decoder panics or an answer contradicts the input.
pub fn decode(data: &[u8]) {
    headers(data);
    inode_header(data);
    index(data);
    bitmap(data);
    addresses(data);
    geometry(data);
    object_ids(data);
    codes(data);
}

/// Build a request, a response and an inode header from `data`, emit each
/// and check that parsing gives the same value back.
///
/// Panics on the first value that does not survive the round trip.
pub fn roundtrip(data: &[u8]) {
    let mut u = Unstructured::new(data);
    // Once the bytes run out `arbitrary` hands out zeros, so an error only
    // ends this input early; it is not a failed property.
    let _ = roundtrip_values(&mut u);
}

fn roundtrip_values(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    request_roundtrip(u)?;
    response_roundtrip(u)?;
    inode_roundtrip(u)
}

/// Header bytes that a request's parse never reads, by the layout of its
/// op-specific part (PROTOCOL.md §2.2, §2.3): `reserved` and `__pad` of the
/// object variant, the unused tail of the VDI variant, all 32 bytes of the
/// argument-less ops. `emit` writes zeros there.
// Lists of byte ranges, some of which hold a single range.
#[allow(clippy::single_range_in_vec_init)]
fn request_unread(kind: ArgsKind) -> &'static [Range<usize>] {
    match kind {
        ArgsKind::Obj => &[35..36, 44..48],
        ArgsKind::Vdi => &[40..48],
        ArgsKind::ClusterDefault | ArgsKind::Empty => &[16..48],
        ArgsKind::Raw => &[],
    }
}

/// Header bytes that a response's parse never reads (PROTOCOL.md §2.4).
/// Ops without a typed variant keep bytes 20..48 as they are.
// Lists of byte ranges, some of which hold a single range.
#[allow(clippy::single_range_in_vec_init)]
fn response_unread(kind: ArgsKind) -> &'static [Range<usize>] {
    match kind {
        ArgsKind::Obj => &[21..24, 32..48],
        ArgsKind::Vdi => &[34..48],
        ArgsKind::ClusterDefault => &[23..48],
        ArgsKind::Empty | ArgsKind::Raw => &[],
    }
}

/// The first 48 bytes of `data` with `unread` zeroed: what emitting a
/// parsed header must give.
fn normalised(data: &[u8], unread: &[Range<usize>]) -> [u8; HEADER_LEN] {
    let mut out: [u8; HEADER_LEN] = data[..HEADER_LEN].try_into().expect("48 bytes");
    for range in unread {
        out[range.clone()].fill(0);
    }
    out
}

/// Overwrite the `unread` bytes of `header` with `junk`.
fn scribble(header: &mut [u8; HEADER_LEN], unread: &[Range<usize>], junk: &[u8; HEADER_LEN]) {
    for range in unread {
        header[range.clone()].copy_from_slice(&junk[range.clone()]);
    }
}

/// Whether `bytes` (at most an inode header long) are all zero; a `memcmp`,
/// fast even in debug builds.
fn is_zero(bytes: &[u8]) -> bool {
    const ZEROS: [u8; inode::HEADER_LEN] = [0; inode::HEADER_LEN];
    bytes == &ZEROS[..bytes.len()]
}

/// `N` little-endian bytes of `data` from `at`, zero past its end.
fn le_bytes<const N: usize>(data: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = at
            .checked_add(i)
            .and_then(|j| data.get(j))
            .copied()
            .unwrap_or(0);
    }
    out
}

fn u32_at(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(le_bytes(data, at))
}

fn u64_at(data: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(le_bytes(data, at))
}

/// Offset of the last 8 bytes of `data`, so that values also come from the
/// end of the input.
fn tail(data: &[u8]) -> usize {
    data.len().saturating_sub(8)
}

fn headers(data: &[u8]) {
    let (request, response) = (Request::parse_bytes(data), Response::parse_bytes(data));
    if data.len() < HEADER_LEN {
        let short = DecodeError::Truncated {
            need: HEADER_LEN,
            have: data.len(),
        };
        assert_eq!(request.err(), Some(short));
        assert_eq!(response.err(), Some(short));
        return;
    }
    let request = request.expect("48 bytes make a request");
    let kind = request.opcode.args_kind();
    assert_eq!(request.opcode.to_u8(), data[1]);
    assert!(matches!(
        (kind, request.args),
        (ArgsKind::Obj, RequestArgs::Obj(_))
            | (ArgsKind::Vdi, RequestArgs::Vdi(_))
            | (
                ArgsKind::ClusterDefault | ArgsKind::Empty,
                RequestArgs::Empty
            )
            | (ArgsKind::Raw, RequestArgs::Raw(_))
    ));
    assert_eq!(request.obj().is_some(), kind == ArgsKind::Obj);
    assert_eq!(request.vdi().is_some(), kind == ArgsKind::Vdi);
    assert_eq!(
        request.payload_len() + request.expected_reply_len(),
        request.data_length
    );
    let emitted = request.to_bytes();
    assert_eq!(emitted, normalised(data, request_unread(kind)));
    assert_eq!(Request::parse_bytes(&emitted), Ok(request));

    let response = response.expect("48 bytes make a response");
    let kind = response.opcode.reply_args_kind();
    assert_eq!(response.result.to_u32(), u32_at(data, 16));
    assert!(matches!(
        (kind, response.args),
        (ArgsKind::Obj, ResponseArgs::Obj { .. })
            | (ArgsKind::Vdi, ResponseArgs::Vdi { .. })
            | (
                ArgsKind::ClusterDefault,
                ResponseArgs::ClusterDefault { .. }
            )
            | (ArgsKind::Empty | ArgsKind::Raw, ResponseArgs::Raw(_))
    ));
    assert_eq!(response.vdi_id().is_some(), kind == ArgsKind::Vdi);
    let emitted = response.to_bytes();
    assert_eq!(emitted, normalised(data, response_unread(kind)));
    if let ResponseArgs::Raw(_) = response.args {
        assert_eq!(emitted[..], data[..HEADER_LEN]);
    }
    assert_eq!(Response::parse_bytes(&emitted), Ok(response));
}

fn inode_header(data: &[u8]) {
    let header = match InodeHeader::parse(data) {
        Ok(header) => header,
        Err(e) => {
            assert_eq!(
                e,
                DecodeError::Truncated {
                    need: LOOKUP_LEN,
                    have: data.len()
                }
            );
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    assert_eq!(header.name[..], data[..NAME_LEN]);
    assert_eq!(header.name(), trim_nul(&data[..NAME_LEN]));
    assert_eq!(header.tag(), trim_nul(&data[NAME_LEN..2 * NAME_LEN]));
    assert_eq!(header.is_deleted(), header.name().is_empty());
    if data.len() < HEADER_FIELDS_LEN {
        assert_eq!(header.btree_counter, 0);
    }
    let mut emitted = vec![0xa5; inode::HEADER_LEN];
    header.emit(&mut emitted).expect("a whole header");
    assert_eq!(emitted[..LOOKUP_LEN], data[..LOOKUP_LEN]);
    assert!(is_zero(&emitted[HEADER_FIELDS_LEN..]));
    assert_eq!(InodeHeader::parse(&emitted), Ok(header));
    if header.is_clone() {
        assert!(!header.is_snapshot() && header.parent_vdi_id != 0);
    }
    assert_eq!(
        header.object_size().is_ok(),
        (MIN_BLOCK_SIZE_SHIFT..=MAX_BLOCK_SIZE_SHIFT).contains(&header.block_size_shift)
    );
    match header.index_len() {
        Ok(len) => assert!(!header.is_hyper() && u64::from(len) <= MAX_DATA_OBJS),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

fn index(data: &[u8]) {
    let first = u32_at(data, 0);
    let view = IndexView::new(data, first);
    let len = view.len();
    assert_eq!(len as usize, data.len() / INDEX_ENTRY_LEN as usize);
    assert_eq!(view.first(), first);
    assert_eq!(view.is_empty(), len == 0);
    let probes = [
        first,
        first.wrapping_sub(1),
        first.wrapping_add(len),
        first.wrapping_add(len).wrapping_sub(1),
        u32_at(data, 4),
        u32::MAX,
    ];
    for idx in probes {
        let expected = idx
            .checked_sub(first)
            .filter(|&rel| rel < len)
            .map(|rel| u32_at(data, rel as usize * INDEX_ENTRY_LEN as usize));
        assert_eq!(
            view.get(idx),
            expected,
            "entry {idx} of a view from {first}"
        );
    }
    // Iteration stops at index 2^32 - 1: a view that would run past it
    // yields only the entries whose index fits.
    let fits = (u64::from(first) + u64::from(len)).min(1 << 32) - u64::from(first);
    let vid = u32_at(data, 4);
    let (mut count, mut used, mut shared) = (0u64, 0, 0);
    for (k, (idx, entry)) in view.iter().enumerate() {
        assert_eq!(u64::from(idx), u64::from(first) + k as u64);
        assert_eq!(view.get(idx), Some(entry));
        count += 1;
        used += u32::from(entry == vid);
        shared += u32::from(entry != vid && entry != 0);
    }
    assert_eq!(count, fits);
    assert_eq!(view.usage(vid), (used, shared));
    let mut owned = IndexView::new(data.to_vec(), first);
    let entry = u32_at(data, tail(data));
    assert_eq!(owned.set(first, entry), len > 0);
    if len > 0 {
        assert_eq!(owned.get(first), Some(entry));
    }
}

thread_local! {
    /// The 2 MiB bitmap buffer, reused so that each input only pays for
    /// filling it.
    static BITMAP: RefCell<Vec<u8>> = RefCell::new(vec![0; VDI_BITMAP_LEN]);
}

/// Fill `buf` with `pattern` repeated (zeros for an empty pattern).
fn fill_repeated(buf: &mut [u8], pattern: &[u8]) {
    if pattern.is_empty() {
        buf.fill(0);
        return;
    }
    let mut filled = pattern.len().min(buf.len());
    buf[..filled].copy_from_slice(&pattern[..filled]);
    while filled < buf.len() {
        let n = filled.min(buf.len() - filled);
        buf.copy_within(..n, filled);
        filled += n;
    }
}

fn bitmap(data: &[u8]) {
    BITMAP.with(|buf| {
        let mut buf = buf.borrow_mut();
        fill_repeated(&mut buf, data);
        check_bitmap(&buf, data);
    });
}

/// Check the bitmap over `buf`, which holds `pattern` repeated.
fn check_bitmap(buf: &[u8], pattern: &[u8]) {
    assert_eq!(
        VdiBitmap::new_checked(pattern).is_ok(),
        pattern.len() == VDI_BITMAP_LEN
    );
    let short = VdiBitmap::new_checked(&buf[1..]).map(|_| ());
    assert!(matches!(short, Err(DecodeError::BadLength { got, .. }) if got == VDI_BITMAP_LEN - 1));
    let bitmap = VdiBitmap::new_checked(buf).expect("2 MiB");
    let bit = |vid: u32| {
        vid < NR_VDIS
            && !pattern.is_empty()
            && pattern[(vid >> 3) as usize % pattern.len()] >> (vid & 7) & 1 == 1
    };
    let values = [
        u32_at(pattern, 0),
        u32_at(pattern, 0) & (NR_VDIS - 1),
        u32_at(pattern, tail(pattern)),
        vid_hash(pattern),
        0,
        NR_VDIS - 1,
        NR_VDIS,
    ];
    // A pattern with a clear bit repeats it every `8 * len` VIDs, so
    // `next_free` stops soon; with every bit set it walks all 2^24 VIDs,
    // which is checked once.
    let full = !pattern.is_empty() && pattern.iter().all(|&b| b == 0xff);
    if full {
        assert_eq!(bitmap.next_free(values[0]), None);
    }
    for value in values {
        assert_eq!(bitmap.contains(value), bit(value), "bit {value}");
        if full {
            continue;
        }
        let (left, right) = bitmap.probe_run(value);
        let start = (value % NR_VDIS).max(1);
        assert_eq!(left, start);
        assert_eq!(right, bitmap.next_free(value));
        match right {
            Some(free) => {
                assert!((1..NR_VDIS).contains(&free) && !bitmap.contains(free));
                if free != start {
                    // The VID just before the one found was taken.
                    let before = if free == 1 { NR_VDIS - 1 } else { free - 1 };
                    assert!(bitmap.contains(before), "{before} is free before {free}");
                }
            }
            None => assert!(bitmap.contains(start)),
        }
    }
    // Likewise `iter` would walk all 2 MiB of an all-zero bitmap.
    if pattern.iter().any(|&b| b != 0) {
        let mut last = None;
        for vid in bitmap.iter().take(64) {
            assert!(bit(vid), "iter gave clear bit {vid}");
            assert!(last < Some(vid));
            last = Some(vid);
        }
    }
}

fn addresses(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        address(s);
    }
    address(&String::from_utf8_lossy(data));
}

fn host_port(hp: &HostPort<'_>) {
    assert!(!hp.host.is_empty());
    assert_ne!(hp.port, Some(0));
}

fn address(s: &str) {
    match parse_vdi_address(s) {
        Ok(addr) => {
            assert_eq!(check_name(addr.name), Ok(()));
            match addr.snapshot {
                Some(Snapshot::Id(id)) => assert_ne!(id, 0),
                Some(Snapshot::Tag(tag)) => assert_eq!(check_tag(tag), Ok(())),
                None => {}
            }
            if let Some(hp) = addr.server {
                host_port(&hp);
            }
            let tag = match addr.snapshot {
                Some(Snapshot::Tag(tag)) => tag,
                _ => "",
            };
            let mut payload = [0u8; 2 * NAME_LEN];
            encode_name_tag(addr.name.as_bytes(), tag.as_bytes(), &mut payload);
            assert_eq!(trim_nul(&payload[..NAME_LEN]), addr.name.as_bytes());
            assert_eq!(trim_nul(&payload[NAME_LEN..]), tag.as_bytes());
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    match parse_host_port(s) {
        Ok(hp) => host_port(&hp),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    match parse_snapshot(s) {
        Ok(Snapshot::Id(id)) => assert_eq!(s.parse::<u32>(), Ok(id)),
        Ok(Snapshot::Tag(tag)) => assert_eq!(tag, s),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

fn geometry(data: &[u8]) {
    let shift = data.first().copied().unwrap_or(0);
    match ObjectSize::from_shift(shift) {
        Ok(size) => {
            assert_eq!(size.shift(), shift);
            assert_eq!(ObjectSize::from_bytes(u64::from(size.bytes())), Ok(size));
        }
        Err(e) => {
            assert!(!(MIN_BLOCK_SIZE_SHIFT..=MAX_BLOCK_SIZE_SHIFT).contains(&shift));
            assert!(!e.to_string().is_empty());
        }
    }
    let bytes = u64_at(data, 1);
    if let Ok(size) = ObjectSize::from_bytes(bytes) {
        assert_eq!(u64::from(size.bytes()), bytes);
    }
    let span = MAX_BLOCK_SIZE_SHIFT - MIN_BLOCK_SIZE_SHIFT + 1;
    let size = ObjectSize::from_shift(MIN_BLOCK_SIZE_SHIFT + shift % span).expect("in range");
    for value in [bytes, u64_at(data, tail(data)), bytes >> 24] {
        let count = size.object_count(value);
        assert!(u128::from(count) * u128::from(size.bytes()) >= u128::from(value));
        match size.check_vdi_size(value) {
            Ok(()) => assert!(value > 0 && count <= MAX_DATA_OBJS),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
        let (idx, offset) = size.locate(value);
        assert!(offset < size.bytes());
        assert_eq!(size.start_of(idx) + u64::from(offset), value);
    }
    let (first, count) = (u32_at(data, 9), u32_at(data, 13));
    match InodeRange::index_run(first, count) {
        Ok(range) => {
            assert!(count > 0 && u64::from(first) + u64::from(count) <= MAX_DATA_OBJS);
            assert!(range.is_index_update());
            assert_eq!(range.index_entries(), Some(first..first + count));
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    assert_eq!(
        InodeRange::index_entry(first),
        InodeRange::index_run(first, 1)
    );
    let range = InodeRange {
        offset: u32_at(data, 17),
        len: u32_at(data, 21),
    };
    if let Some(entries) = range.index_entries() {
        assert!(range.is_index_update());
        assert_eq!(INDEX_OFFSET + entries.start * INDEX_ENTRY_LEN, range.offset);
        assert!(INDEX_OFFSET + entries.end * INDEX_ENTRY_LEN <= HEADER_AND_INDEX_LEN);
    }
}

fn object_ids(data: &[u8]) {
    for raw in [u64_at(data, 0), u64_at(data, tail(data))] {
        let oid = Oid(raw);
        let vid_bits = oid.vid_bits();
        assert_eq!(u64::from(vid_bits), (raw & OID_VID_MASK) >> VID_SHIFT);
        assert_eq!(oid.vid(), Vid::new(vid_bits).ok());
        assert_eq!(oid.index(), raw as u32);
        assert_eq!(oid.is_data(), oid.kind() == OidKind::Data);
        assert_eq!(oid.to_string().len(), 16);
    }
    let raw = u32_at(data, 8);
    match Vid::new(raw) {
        Ok(vid) => {
            assert_eq!(vid.get(), raw);
            assert_eq!(Vid::from_entry(raw), Some(vid));
            assert!(!vid.to_string().is_empty());
            let low = u32_at(data, 12);
            let built = [
                (Oid::data(vid, low), OidKind::Data),
                (Oid::inode(vid), OidKind::Inode),
                (Oid::vmstate(vid, low), OidKind::Vmstate),
                (Oid::attr(vid, low), OidKind::Attr),
                (Oid::btree(vid, low), OidKind::Btree),
            ];
            for (oid, kind) in built {
                assert_eq!(oid.kind(), kind);
                assert_eq!(oid.vid(), Some(vid));
            }
            assert_eq!(Oid::data(vid, low).index(), low);
        }
        Err(e) => {
            assert!(raw == 0 || raw >= NR_VDIS);
            assert_eq!(Vid::from_entry(raw), None);
            assert!(!e.to_string().is_empty());
        }
    }
}

fn codes(data: &[u8]) {
    let [first, second] = le_bytes(data, 0);
    for raw in [u32_at(data, 0), u32_at(data, tail(data)), u32::from(first)] {
        let code = ResultCode::from_u32(raw);
        assert_eq!(code.to_u32(), raw);
        assert_eq!(code.is_success(), raw == 0);
        assert_eq!(code.class() == ResultClass::Success, raw == 0);
        assert!(!code.name().is_empty() && !code.message().is_empty());
        assert!(!code.to_string().is_empty());
    }
    for &byte in data.iter().take(8) {
        let opcode = Opcode::from_u8(byte);
        assert_eq!(opcode.to_u8(), byte);
        assert_eq!(opcode.is_internal(), byte >= 0x80);
        assert!(matches!(opcode.proto_ver(), 0x02 | 0x0a));
        if let Opcode::Unknown(_) = opcode {
            assert_eq!(opcode.args_kind(), ArgsKind::Raw);
        }
        assert!(!opcode.name().is_empty() && !opcode.to_string().is_empty());
    }
    let redundancy = Redundancy::from_wire(first, second);
    assert!(!redundancy.to_string().is_empty());
    let (copies, policy) = redundancy.to_wire();
    assert_eq!(policy, second);
    if second == 0 {
        assert_eq!(copies, first);
    }
}

/// The next `N` bytes of `u` (zero-padded once it runs out), much cheaper
/// than `u.arbitrary::<[u8; N]>()` in debug builds.
fn array<const N: usize>(u: &mut Unstructured<'_>) -> arbitrary::Result<[u8; N]> {
    let mut out = [0u8; N];
    let bytes = u.bytes(N.min(u.len()))?;
    out[..bytes.len()].copy_from_slice(bytes);
    Ok(out)
}

fn request_roundtrip(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let opcode = Opcode::from_u8(u.arbitrary()?);
    let args = match opcode.args_kind() {
        ArgsKind::Obj => RequestArgs::Obj(ObjArgs {
            oid: Oid(u.arbitrary()?),
            cow_oid: Oid(u.arbitrary()?),
            copies: u.arbitrary()?,
            copy_policy: u.arbitrary()?,
            ec_index: u.arbitrary()?,
            tgt_epoch: u.arbitrary()?,
            offset: u.arbitrary()?,
        }),
        ArgsKind::Vdi => RequestArgs::Vdi(VdiArgs {
            vdi_size: u.arbitrary()?,
            base_vdi_id: u.arbitrary()?,
            copies: u.arbitrary()?,
            copy_policy: u.arbitrary()?,
            store_policy: u.arbitrary()?,
            block_size_shift: u.arbitrary()?,
            snapid: u.arbitrary()?,
            lock_type: u.arbitrary()?,
        }),
        ArgsKind::ClusterDefault | ArgsKind::Empty => RequestArgs::Empty,
        ArgsKind::Raw => RequestArgs::Raw(array(u)?),
    };
    let request = Request {
        proto_ver: u.arbitrary()?,
        opcode,
        flags: Flags(u.arbitrary()?),
        epoch: u.arbitrary()?,
        id: u.arbitrary()?,
        data_length: u.arbitrary()?,
        args,
    };
    let unread = request_unread(opcode.args_kind());
    let mut bytes = request.to_bytes();
    assert!(unread.iter().all(|r| is_zero(&bytes[r.clone()])));
    assert_eq!(Request::parse_bytes(&bytes), Ok(request));
    scribble(&mut bytes, unread, &array(u)?);
    assert_eq!(Request::parse_bytes(&bytes), Ok(request));

    let trailer: u8 = u.arbitrary()?;
    let mut longer = [trailer; HEADER_LEN + 4];
    request.emit_bytes(&mut longer).expect("52 bytes");
    assert_eq!(longer[..HEADER_LEN], request.to_bytes());
    assert_eq!(longer[HEADER_LEN..], [trailer; 4]);
    assert!(request.emit_bytes(&mut longer[..HEADER_LEN - 1]).is_err());
    Ok(())
}

fn response_roundtrip(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let opcode = Opcode::from_u8(u.arbitrary()?);
    let args = match opcode.reply_args_kind() {
        ArgsKind::Obj => ResponseArgs::Obj {
            copies: u.arbitrary()?,
            offset: u.arbitrary()?,
        },
        ArgsKind::Vdi => ResponseArgs::Vdi {
            rsvd: u.arbitrary()?,
            vdi_id: u.arbitrary()?,
            attr_id: u.arbitrary()?,
            copies: u.arbitrary()?,
            block_size_shift: u.arbitrary()?,
        },
        ArgsKind::ClusterDefault => ResponseArgs::ClusterDefault {
            nr_copies: u.arbitrary()?,
            copy_policy: u.arbitrary()?,
            block_size_shift: u.arbitrary()?,
        },
        ArgsKind::Empty | ArgsKind::Raw => ResponseArgs::Raw(array(u)?),
    };
    let response = Response {
        proto_ver: u.arbitrary()?,
        opcode,
        flags: u.arbitrary()?,
        epoch: u.arbitrary()?,
        id: u.arbitrary()?,
        data_length: u.arbitrary()?,
        result: ResultCode::from_u32(u.arbitrary()?),
        args,
    };
    let unread = response_unread(opcode.reply_args_kind());
    let mut bytes = response.to_bytes();
    assert!(unread.iter().all(|r| is_zero(&bytes[r.clone()])));
    assert_eq!(Response::parse_bytes(&bytes), Ok(response));
    scribble(&mut bytes, unread, &array(u)?);
    assert_eq!(Response::parse_bytes(&bytes), Ok(response));
    Ok(())
}

fn inode_roundtrip(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let header = InodeHeader {
        name: array(u)?,
        tag: array(u)?,
        create_time: u.arbitrary()?,
        snap_ctime: u.arbitrary()?,
        vm_clock_nsec: u.arbitrary()?,
        vdi_size: u.arbitrary()?,
        vm_state_size: u.arbitrary()?,
        copy_policy: u.arbitrary()?,
        store_policy: u.arbitrary()?,
        nr_copies: u.arbitrary()?,
        block_size_shift: u.arbitrary()?,
        snap_id: u.arbitrary()?,
        vdi_id: u.arbitrary()?,
        parent_vdi_id: u.arbitrary()?,
        btree_counter: u.arbitrary()?,
    };
    let mut bytes = vec![u.arbitrary::<u8>()?; inode::HEADER_LEN];
    header.emit(&mut bytes).expect("a whole header");
    assert!(is_zero(&bytes[HEADER_FIELDS_LEN..]));
    assert_eq!(InodeHeader::parse(&bytes), Ok(header));
    assert_eq!(InodeHeader::parse(&bytes[..HEADER_FIELDS_LEN]), Ok(header));
    let lookup = InodeHeader {
        btree_counter: 0,
        ..header
    };
    assert_eq!(InodeHeader::parse(&bytes[..LOOKUP_LEN]), Ok(lookup));
    assert!(header.emit(&mut bytes[..HEADER_FIELDS_LEN]).is_err());
    Ok(())
}
