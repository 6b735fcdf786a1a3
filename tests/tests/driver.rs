//! The blocking driver over a real socket to the reference server: every
//! operation end to end, and what it does when the server answers wrongly
//! (an error naming the reply, then a refusal to go on over a stream that
//! is out of step; never a success it did not get, never a hang).

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use sheepdog_core::driver::{Clock, Driver, DriverError};
use sheepdog_core::engine::{CreateOptions, Engine, Error, Problem, RetryPolicy};
use sheepdog_core::oid::{Oid, Vid};
use sheepdog_core::redundancy::Redundancy;
use sheepdog_core::wire::Opcode;
use sheepdog_tests::server::{
    spawn_loopback, Cluster, ClusterConfig, FaultAction, Matcher, NetOptions, ServerHandle,
};

/// A std socket as an `embedded-io` stream.
struct Conn(TcpStream);

impl embedded_io::ErrorType for Conn {
    type Error = embedded_io::ErrorKind;
}

impl embedded_io::Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        self.0.read(buf).map_err(|_| embedded_io::ErrorKind::Other)
    }
}

impl embedded_io::Write for Conn {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.0.write(buf).map_err(|_| embedded_io::ErrorKind::Other)
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        self.0.flush().map_err(|_| embedded_io::ErrorKind::Other)
    }
}

struct Wall(Instant);

impl Clock for Wall {
    fn now(&mut self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
    fn wait_until(&mut self, deadline: u64) {
        let now = self.now();
        if deadline > now {
            std::thread::sleep(Duration::from_nanos(deadline - now));
        }
    }
}

type Drv = Driver<Conn, Vec<u8>, Wall, 4>;

fn connect(h: &ServerHandle) -> Drv {
    let s = TcpStream::connect(h.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let retry = RetryPolicy {
        max_retries: 4,
        initial_backoff: 1_000_000,
        max_backoff: 10_000_000,
    };
    let engine: Engine<Vec<u8>, 4> = Engine::new(vec![0u8; 4096], retry);
    Driver::new(Conn(s), engine, Wall(Instant::now()))
}

fn server() -> ServerHandle {
    spawn_loopback(
        Cluster::new(ClusterConfig::default()),
        NetOptions::reordering(),
    )
    .expect("server")
}

fn opts(size: u64) -> CreateOptions {
    CreateOptions {
        size,
        redundancy: Redundancy::ClusterDefault,
        block_size_shift: 0,
        prealloc: false,
        hyper: false,
    }
}

#[test]
fn every_operation_end_to_end() {
    let h = server();
    let mut d = connect(&h);
    let vid = d.create("fw", opts(8 << 20)).unwrap();
    let info = d.open("fw", None, false).unwrap();
    assert_eq!(info.vid, vid);
    let data: Vec<u8> = (0..9000u32).map(|i| (i * 7) as u8).collect();
    d.write_at((4 << 20) - 100, &data).unwrap();
    let mut back = vec![0u8; data.len()];
    d.read_at((4 << 20) - 100, &mut back).unwrap();
    assert_eq!(back, data);
    let (snap, working) = d.snapshot("s1").unwrap();
    assert_eq!(snap, vid);
    assert_ne!(working, vid);
    d.resize(16 << 20).unwrap();
    d.close().unwrap();
    d.open(
        "fw",
        Some(sheepdog_core::address::Snapshot::Tag("s1")),
        false,
    )
    .unwrap();
    let clone = d.clone_snapshot("fw2").unwrap();
    d.close().unwrap();
    assert_eq!(h.cluster().lookup("fw2", "", 0), Ok(clone));
    assert_eq!(d.delete("fw2", None).unwrap(), clone);
}

#[test]
fn a_bad_reply_is_an_error_and_the_stream_is_not_used_again() {
    let h = server();
    let mut d = connect(&h);
    let vid = d.create("fw", opts(4 << 20)).unwrap();
    d.open("fw", None, false).unwrap();
    d.write_at(0, &[1u8; 4096]).unwrap();
    let oid = Oid::data(Vid::new(vid).unwrap(), 0);
    h.cluster().inject(
        Matcher::object(oid).with_opcode(Opcode::ReadObj),
        FaultAction::ApplyThenLength(16),
        1,
    );
    let mut buf = [0u8; 4096];
    match d.read_at(0, &mut buf) {
        Err(DriverError::Engine(Error::BadReply(b))) => assert_eq!(
            b.problem,
            Problem::Length {
                got: 16,
                expected: 4096
            }
        ),
        other => panic!("expected a bad reply, got {other:?}"),
    }
    assert!(matches!(
        d.read_at(0, &mut buf),
        Err(DriverError::OutOfStep)
    ));
}

#[test]
fn a_server_that_closes_the_connection_is_an_error_not_a_hang() {
    let h = server();
    let mut d = connect(&h);
    d.create("fw", opts(4 << 20)).unwrap();
    h.cluster().inject(
        Matcher::opcode(Opcode::GetVdiInfo),
        FaultAction::ApplyThenDisconnect,
        1,
    );
    assert!(matches!(
        d.open("fw", None, false),
        Err(DriverError::Closed | DriverError::Io(_))
    ));
    assert!(matches!(d.cluster_default(), Err(DriverError::OutOfStep)));
}
