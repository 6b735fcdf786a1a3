//! The engine's own size is fixed at compile time (no allocation): these
//! bounds keep it small enough for a microcontroller's stack or a static.
//! The figures are reported in BENCHMARKS.md.

use core::mem::size_of;

use sheepdog_core::driver::Driver;
use sheepdog_core::engine::Engine;

#[test]
fn engine_size_is_bounded() {
    // Default capacity: 16 requests in flight; the index cache is the
    // caller's (here a reference, as the tool's Vec would be).
    let default = size_of::<Engine<&mut [u8]>>();
    let small = size_of::<Engine<&mut [u8], 4>>();
    println!("size_of::<Engine<&mut [u8]>>() = {default} bytes (N = 16)");
    println!("size_of::<Engine<&mut [u8], 4>>() = {small} bytes (N = 4)");
    assert!(small < default);
    assert!(default <= 16 * 1024, "{default}");
}

#[test]
fn driver_size_is_bounded() {
    struct Nothing;
    let d = size_of::<Driver<Nothing, &mut [u8], Nothing, 4>>();
    println!("size_of::<Driver<_, &mut [u8], _, 4>>() = {d} bytes");
    assert!(d <= 24 * 1024, "{d}");
}
