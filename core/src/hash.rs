//! FNV-1a 64 and the VID hash of a name (PROTOCOL.md §9.1).

/// FNV-1a 64 offset basis.
pub const FNV1A64_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64 prime.
pub const FNV1A64_PRIME: u64 = 0x0000_0100_0000_01b3;
/// Mask of a 24-bit VID.
pub const VID_MASK: u32 = 0x00ff_ffff;

/// FNV-1a 64 of `bytes`, continuing from `hash` (start with
/// [`FNV1A64_OFFSET`]).
pub const fn fnv1a64_update(mut hash: u64, bytes: &[u8]) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(FNV1A64_PRIME);
        i += 1;
    }
    hash
}

/// FNV-1a 64 of `bytes`.
pub const fn fnv1a64(bytes: &[u8]) -> u64 {
    fnv1a64_update(FNV1A64_OFFSET, bytes)
}

/// `sd_hash_vdi`: the VID a name hashes to, where probing for its VIDs
/// starts. The hash of a name may be 0; allocation then starts at 1.
pub const fn vid_hash(name: &[u8]) -> u32 {
    (fnv1a64(name) & VID_MASK as u64) as u32
}
