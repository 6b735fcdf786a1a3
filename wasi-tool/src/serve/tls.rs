//! TLS for `serve`, the way QEMU's `tls-creds-x509` and nbdkit's
//! `--tls-certificates` lay out their credentials: a directory holding
//! `ca-cert.pem`, `server-cert.pem` and `server-key.pem`. The NBD codec
//! only says when to start it (`core::nbd::handshake`, NBD_OPT_STARTTLS);
//! this file turns the files into a rustls configuration, and moves a
//! connection's bytes through its TLS session over the non-blocking
//! socket.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};

use crate::error::CliError;

/// Plain text a session buffers for sending before its writer takes no
/// more: a connection's replies wait in its own queue, counted in its
/// share, rather than here.
const SENDABLE: usize = 256 << 10;

/// The server's TLS configuration, loaded once and shared by every
/// connection.
#[derive(Clone)]
pub struct Creds {
    config: Arc<ServerConfig>,
}

impl std::fmt::Debug for Creds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Creds")
    }
}

fn read_err(path: &Path, e: impl std::fmt::Display) -> CliError {
    CliError::msg(format!("--tls-creds: cannot read {}: {e}", path.display()))
}

impl Creds {
    /// The credentials in `dir`: `server-cert.pem` (the server's
    /// certificate, then its chain) and `server-key.pem`; with
    /// `verify_peer`, clients must show a certificate signed by a CA of
    /// `ca-cert.pem`.
    pub fn load(dir: &str, verify_peer: bool) -> Result<Creds, CliError> {
        let dir = Path::new(dir);
        if !dir.is_dir() {
            return Err(CliError::msg(format!(
                "--tls-creds {}: not a directory (it holds ca-cert.pem, server-cert.pem and server-key.pem)",
                dir.display()
            )));
        }
        let cert_path = dir.join("server-cert.pem");
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
            .map_err(|e| read_err(&cert_path, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| read_err(&cert_path, e))?;
        if certs.is_empty() {
            return Err(read_err(&cert_path, "no certificate in it"));
        }
        let key_path = dir.join("server-key.pem");
        let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| read_err(&key_path, e))?;
        // ring has no post-quantum key exchange (hence rustls's
        // deprecation note), but it is the provider that builds for
        // wasm32-wasip2 as well: one TLS for the native tool and the
        // component.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| CliError::msg(format!("TLS: {e}")))?;
        let builder = if verify_peer {
            let ca_path = dir.join("ca-cert.pem");
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(&ca_path).map_err(|e| read_err(&ca_path, e))? {
                let c = c.map_err(|e| read_err(&ca_path, e))?;
                roots.add(c).map_err(|e| read_err(&ca_path, e))?;
            }
            if roots.is_empty() {
                return Err(read_err(&ca_path, "no CA certificate in it"));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| read_err(&ca_path, e))?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = builder
            .with_single_cert(certs, key)
            .map_err(|e| CliError::msg(format!("--tls-creds: {}: {e}", dir.display())))?;
        Ok(Creds {
            config: Arc::new(config),
        })
    }

    /// A new server session for one connection.
    pub fn session(&self) -> io::Result<Session> {
        let mut conn = ServerConnection::new(Arc::clone(&self.config)).map_err(io::Error::other)?;
        conn.set_buffer_limit(Some(SENDABLE));
        Ok(Session { conn, plain: 0 })
    }
}

/// One connection's TLS session.
pub struct Session {
    conn: ServerConnection,
    /// Plain text decrypted and not read yet.
    plain: usize,
}

impl Session {
    /// Plain text into `buf`, reading ciphertext from `sock` as needed:
    /// `Ok(0)` when the client closed, `WouldBlock` when nothing is there.
    pub fn read(&mut self, sock: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => {
                    self.plain = self
                        .conn
                        .process_new_packets()
                        .map_or(0, |s| s.plaintext_bytes_to_read());
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // Closed without close_notify: the client is gone.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if self.conn.read_tls(sock)? == 0 {
                return Ok(0);
            }
            if let Err(e) = self.conn.process_new_packets() {
                // The alert it queued goes out with the connection's last
                // flush.
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    }

    /// Ciphertext that arrived before the session began (bytes the client
    /// sent right after STARTTLS).
    pub fn feed(&mut self, mut early: &[u8]) -> io::Result<()> {
        while !early.is_empty() {
            self.conn.read_tls(&mut early)?;
            self.conn
                .process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
        Ok(())
    }

    /// Whether plain text waits to be read without the socket saying so.
    pub fn has_plaintext(&self) -> bool {
        self.plain > 0
    }

    /// Whether ciphertext waits to be sent.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Send what ciphertext the socket takes: `Ok(true)` when none is
    /// left.
    pub fn send(&mut self, sock: &mut impl Write) -> io::Result<bool> {
        while self.conn.wants_write() {
            match self.conn.write_tls(sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Where plain text to send goes (it takes up to [`SENDABLE`] bytes
    /// ahead of the socket).
    pub fn writer(&mut self) -> rustls::Writer<'_> {
        self.conn.writer()
    }
}
