//! The core on a microcontroller: open a VDI, write a sector, read it back,
//! over a byte stream (a UART or a TCP offload chip) through the blocking
//! driver. Build with
//! `cargo build -p sheepdog-core --example firmware --target thumbv7em-none-eabihf --profile firmware`
//! (opt-level "z", LTO, one codegen unit, panic = "abort": what firmware
//! ships) and measure with `scripts/firmware-size`, as `scripts/check`
//! does against its budget of 32 KiB of `.text`. Nothing here is board specific: the connection
//! is a stand-in that the optimiser cannot see through. On a host it builds
//! as an ordinary program that runs the same code once.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

use core::convert::Infallible;
use core::hint::black_box;
#[cfg(target_os = "none")]
use core::panic::PanicInfo;

use sheepdog_core::driver::{Clock, Driver};
use sheepdog_core::engine::{Engine, RetryPolicy};

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    loop {}
}

/// The byte stream to the gateway.
struct Link;

impl embedded_io::ErrorType for Link {
    type Error = Infallible;
}

impl embedded_io::Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        for b in buf.iter_mut() {
            *b = black_box(0);
        }
        Ok(buf.len())
    }
}

impl embedded_io::Write for Link {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        black_box(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

/// A tick counter.
struct Ticks(u64);

impl Clock for Ticks {
    fn now(&mut self) -> u64 {
        self.0 = black_box(self.0 + 1);
        self.0
    }
    fn wait_until(&mut self, deadline: u64) {
        while self.now() < deadline {}
    }
}

/// Open a VDI, write a sector, read it back, close.
fn demo() -> [u8; 512] {
    // Index cache for VDIs up to 1024 objects (4 GiB at 4 MiB objects).
    let engine: Engine<[u8; 4096], 4> = Engine::new([0; 4096], RetryPolicy::default());
    let mut sd = Driver::new(Link, engine, Ticks(0));
    let mut sector = [0x5au8; 512];
    if sd.open("firmware-log", None, false).is_ok() {
        let _ = sd.write_at(0, &sector);
        let _ = sd.read_at(0, &mut sector);
        let _ = sd.close();
    }
    sector
}

/// Entry point on the microcontroller.
#[cfg(target_os = "none")]
#[no_mangle]
pub extern "C" fn _start() -> ! {
    black_box(demo());
    loop {}
}

#[cfg(not(target_os = "none"))]
fn main() {
    black_box(demo());
}
