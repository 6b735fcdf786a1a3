//! A small blocking driver: runs the [`Engine`] over one connection that
//! implements the `embedded-io` [`Read`] and [`Write`] traits, one operation
//! at a time. Firmware and unikernels get every operation with a few lines:
//!
//! ```no_run
//! # fn demo<T: embedded_io::Read + embedded_io::Write, C: sheepdog_core::driver::Clock>(conn: T, clock: C) {
//! use sheepdog_core::driver::Driver;
//! use sheepdog_core::engine::{Engine, RetryPolicy};
//!
//! let engine: Engine<[u8; 4096], 4> = Engine::new([0; 4096], RetryPolicy::default());
//! let mut sd = Driver::new(conn, engine, clock);
//! sd.open("firmware-log", None, false).unwrap();
//! sd.write_at(0, b"hello").unwrap();
//! let mut back = [0u8; 5];
//! sd.read_at(0, &mut back).unwrap();
//! sd.close().unwrap();
//! # }
//! ```

use core::fmt;

use embedded_io::{Read, Write};

use crate::address::Snapshot;
use crate::engine::{
    ControlDone, CreateOptions, Engine, Error, Event, VolumeInfo, SCRATCH_LEN, TRANSMIT_BUF_LEN,
};
use crate::receive::{ReadBuffers, ReceiveError, Receiver};

/// Time for retries: nanoseconds from any origin, and a way to wait.
pub trait Clock {
    /// The time now.
    fn now(&mut self) -> u64;
    /// Return at `deadline` or later.
    fn wait_until(&mut self, deadline: u64);
}

/// Why a driven operation failed.
#[derive(Debug)]
pub enum DriverError<E> {
    /// The operation failed (a server result, a bad argument ...).
    Engine(Error),
    /// The connection failed.
    Io(E),
    /// The server closed the connection.
    Closed,
    /// An earlier bad reply or connection failure left the connection out
    /// of step: nothing more is sent on it. Reconnect with a new driver.
    OutOfStep,
}

impl<E> From<Error> for DriverError<E> {
    fn from(e: Error) -> Self {
        DriverError::Engine(e)
    }
}

impl<E: fmt::Debug> fmt::Display for DriverError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriverError::Engine(e) => e.fmt(f),
            DriverError::Io(e) => write!(f, "connection error: {e:?}"),
            DriverError::Closed => f.write_str("connection closed by the server"),
            DriverError::OutOfStep => {
                f.write_str("the connection is out of step after an earlier failure: connect again")
            }
        }
    }
}

impl<E: fmt::Debug> core::error::Error for DriverError<E> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            DriverError::Engine(e) => Some(e),
            _ => None,
        }
    }
}

/// Runs one operation at a time to completion on one connection.
pub struct Driver<T, S, C, const N: usize> {
    conn: T,
    engine: Engine<S, N>,
    clock: C,
    tx: [u8; TRANSMIT_BUF_LEN],
    scratch: [u8; SCRATCH_LEN],
    rx: Receiver,
    /// A bad reply or an I/O failure happened: the stream is out of step.
    broken: bool,
}

/// The buffers of the one read or write under way.
enum Data<'a> {
    None,
    Out(&'a [u8]),
    In(&'a mut [u8]),
}

const TOKEN: u64 = 1;

impl<T, S, C, const N: usize> Driver<T, S, C, N>
where
    T: Read + Write,
    S: AsRef<[u8]> + AsMut<[u8]>,
    C: Clock,
{
    /// A driver over `conn`.
    pub fn new(conn: T, engine: Engine<S, N>, clock: C) -> Self {
        Driver {
            conn,
            engine,
            clock,
            tx: [0; TRANSMIT_BUF_LEN],
            scratch: [0; SCRATCH_LEN],
            rx: Receiver::new(),
            broken: false,
        }
    }

    /// The engine, for its getters.
    pub fn engine(&self) -> &Engine<S, N> {
        &self.engine
    }

    /// Give back the connection and the engine.
    pub fn into_parts(self) -> (T, Engine<S, N>) {
        (self.conn, self.engine)
    }

    /// Refuse to go on over a stream that is out of step.
    fn ready(&self) -> Result<(), DriverError<T::Error>> {
        if self.broken {
            Err(DriverError::OutOfStep)
        } else {
            Ok(())
        }
    }

    fn control(&mut self) -> Result<ControlDone, DriverError<T::Error>> {
        match self.drive(Data::None)? {
            Event::Control(ControlDone::Failed(e)) => Err(e.into()),
            Event::Control(done) => Ok(done),
            _ => Err(Error::UnexpectedReply { id: 0 }.into()),
        }
    }

    /// See [`Engine::cluster_default`]; returns (copies, policy, shift).
    pub fn cluster_default(&mut self) -> Result<(u8, u8, u8), DriverError<T::Error>> {
        self.ready()?;
        self.engine.cluster_default()?;
        match self.control()? {
            ControlDone::ClusterDefault {
                copies,
                copy_policy,
                block_size_shift,
            } => Ok((copies, copy_policy, block_size_shift)),
            _ => Err(Error::UnexpectedReply { id: 0 }.into()),
        }
    }

    /// See [`Engine::create`]; returns the new VID.
    pub fn create(
        &mut self,
        name: &str,
        opts: CreateOptions,
    ) -> Result<u32, DriverError<T::Error>> {
        self.ready()?;
        self.engine.create(name, opts)?;
        match self.control()? {
            ControlDone::Created { vid } => Ok(vid),
            _ => Err(Error::UnexpectedReply { id: 0 }.into()),
        }
    }

    /// See [`Engine::open`].
    pub fn open(
        &mut self,
        name: &str,
        snapshot: Option<Snapshot<'_>>,
        lock: bool,
    ) -> Result<VolumeInfo, DriverError<T::Error>> {
        self.ready()?;
        self.engine.open(name, snapshot, lock)?;
        match self.control()? {
            ControlDone::Opened(info) => Ok(info),
            _ => Err(Error::UnexpectedReply { id: 0 }.into()),
        }
    }

    /// See [`Engine::close`].
    pub fn close(&mut self) -> Result<(), DriverError<T::Error>> {
        self.ready()?;
        self.engine.close()?;
        self.control().map(|_| ())
    }

    /// See [`Engine::snapshot`]; returns (snapshot VID, working VID).
    pub fn snapshot(&mut self, tag: &str) -> Result<(u32, u32), DriverError<T::Error>> {
        self.ready()?;
        self.engine.snapshot(tag)?;
        match self.control()? {
            ControlDone::Snapshot { snapshot, working } => Ok((snapshot, working)),
            _ => Err(Error::UnexpectedReply { id: 0 }.into()),
        }
    }

    /// See [`Engine::clone_snapshot`]; returns the clone's VID.
    pub fn clone_snapshot(&mut self, name: &str) -> Result<u32, DriverError<T::Error>> {
        self.ready()?;
        self.engine.clone_snapshot(name)?;
        match self.control()? {
            ControlDone::Cloned { vid } => Ok(vid),
            _ => Err(Error::UnexpectedReply { id: 0 }.into()),
        }
    }

    /// See [`Engine::resize`].
    pub fn resize(&mut self, size: u64) -> Result<(), DriverError<T::Error>> {
        self.ready()?;
        self.engine.resize(size)?;
        self.control().map(|_| ())
    }

    /// See [`Engine::delete`]; returns the deleted VID.
    pub fn delete(
        &mut self,
        name: &str,
        snapshot: Option<Snapshot<'_>>,
    ) -> Result<u32, DriverError<T::Error>> {
        self.ready()?;
        self.engine.delete(name, snapshot)?;
        match self.control()? {
            ControlDone::Deleted { vid } => Ok(vid),
            _ => Err(Error::UnexpectedReply { id: 0 }.into()),
        }
    }

    /// See [`Engine::rollback`]; returns the new working VID.
    pub fn rollback(&mut self) -> Result<u32, DriverError<T::Error>> {
        self.ready()?;
        self.engine.rollback()?;
        match self.control()? {
            ControlDone::RolledBack { vid } => Ok(vid),
            _ => Err(Error::UnexpectedReply { id: 0 }.into()),
        }
    }

    /// Write `data` at `offset` of the open VDI.
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), DriverError<T::Error>> {
        self.ready()?;
        self.engine.write(TOKEN, offset, data.len() as u64)?;
        self.done(Data::Out(data))
    }

    /// Read `buf.len()` bytes at `offset` of the open VDI.
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), DriverError<T::Error>> {
        self.ready()?;
        self.engine.read(TOKEN, offset, buf.len() as u64)?;
        self.done(Data::In(buf))
    }

    fn done(&mut self, data: Data<'_>) -> Result<(), DriverError<T::Error>> {
        match self.drive(data)? {
            Event::Done { result, .. } => result.map_err(DriverError::Engine),
            _ => Err(Error::UnexpectedReply { id: 0 }.into()),
        }
    }

    /// Send, receive and wait until the operation under way completes.
    /// Any failure of the connection, or a reply the engine refused,
    /// leaves the stream out of step: the driver then refuses to go on.
    fn drive(&mut self, data: Data<'_>) -> Result<Event, DriverError<T::Error>> {
        let r = self.drive_inner(data);
        if let Err(DriverError::Io(_) | DriverError::Closed) = r {
            // A write failed: the stream is out of step (receive() marks
            // its own failures).
            self.broken = true;
        }
        r
    }

    fn drive_inner(&mut self, mut data: Data<'_>) -> Result<Event, DriverError<T::Error>> {
        loop {
            while let Some(t) = self.engine.poll_transmit(&mut self.tx)? {
                self.conn
                    .write_all(&self.tx[..t.header_len])
                    .map_err(DriverError::Io)?;
                if let (Some(d), Data::Out(bytes)) = (&t.data, &data) {
                    let r = d.range.start as usize..d.range.end as usize;
                    self.conn.write_all(&bytes[r]).map_err(DriverError::Io)?;
                }
            }
            self.conn.flush().map_err(DriverError::Io)?;
            while let Some(ev) = self.engine.poll_event() {
                match ev {
                    Event::Zeros(z) => {
                        if let Data::In(buf) = &mut data {
                            buf[z.range.start as usize..z.range.end as usize].fill(0);
                        }
                    }
                    Event::DataDone { .. } => {}
                    done => return Ok(done),
                }
            }
            if self.engine.in_flight() > 0 {
                self.receive(&mut data)?;
            } else if let Some(deadline) = self.engine.poll_timeout() {
                self.clock.wait_until(deadline);
                let now = self.clock.now();
                self.engine.handle_timeout(now);
            } else {
                // Nothing to send, to receive or to wait for, and no event:
                // the engine's liveness promise says this cannot be;
                // report it rather than spin.
                return Err(
                    Error::Internal("the engine has nothing to send, receive or wait for").into(),
                );
            }
        }
    }

    fn receive(&mut self, data: &mut Data<'_>) -> Result<(), DriverError<T::Error>> {
        let clock = &mut self.clock;
        let res = self.rx.receive(
            &mut self.engine,
            &mut self.conn,
            data,
            &mut self.scratch,
            &mut || clock.now(),
        );
        // Whatever went wrong, the stream is out of step now.
        res.map_err(|e| {
            self.broken = true;
            match e {
                ReceiveError::Reply(e) => DriverError::Engine(e),
                ReceiveError::Io(e) => DriverError::Io(e),
                ReceiveError::Closed => DriverError::Closed,
            }
        })
    }
}

impl ReadBuffers for Data<'_> {
    fn read_buffer(&mut self, token: u64) -> Option<&mut [u8]> {
        match self {
            Data::In(buf) if token == TOKEN => Some(buf),
            _ => None,
        }
    }
}
