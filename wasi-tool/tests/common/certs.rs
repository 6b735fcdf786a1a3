//! x509 credentials for the TLS tests, made with the openssl command the
//! way a user would: a CA, a server certificate for localhost and
//! 127.0.0.1 signed by it, a client certificate signed by it, and a client
//! certificate signed by another CA. Laid out as QEMU's tls-creds-x509
//! and libnbd's `tls-certificates` expect: `ca-cert.pem`,
//! `server-cert.pem`, `server-key.pem`, `client-cert.pem`,
//! `client-key.pem`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{s, TempDir};

/// Directories of credentials.
pub struct Creds {
    _dir: TempDir,
    /// The server's: `ca-cert.pem`, `server-cert.pem`, `server-key.pem`.
    pub server: PathBuf,
    /// A client's, with a certificate the server's CA signed.
    pub client: PathBuf,
    /// A client's whose certificate another CA signed (the server's CA to
    /// check the server with).
    pub stranger: PathBuf,
}

fn openssl(args: &[&str], cwd: &Path) {
    let o = Command::new("openssl")
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("openssl is installed (scripts/setup)");
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A CA in `dir`: `NAME-cert.pem`, `NAME-key.pem`.
fn ca(dir: &Path, name: &str) {
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "3650",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}-key.pem"),
            "-out",
            &format!("{name}-cert.pem"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        dir,
    );
}

/// A certificate for `cn` with `ext` (a file of x509v3 extensions),
/// signed by the CA `ca`: `OUT-cert.pem`, `OUT-key.pem`.
fn signed(dir: &Path, ca: &str, out: &str, cn: &str, ext: &str) {
    std::fs::write(dir.join(format!("{out}.ext")), ext).unwrap();
    openssl(
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            &format!("{out}-key.pem"),
            "-out",
            &format!("{out}.csr"),
        ],
        dir,
    );
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            &format!("{out}.csr"),
            "-CA",
            &format!("{ca}-cert.pem"),
            "-CAkey",
            &format!("{ca}-key.pem"),
            "-CAcreateserial",
            "-days",
            "3650",
            "-out",
            &format!("{out}-cert.pem"),
            "-extfile",
            &format!("{out}.ext"),
        ],
        dir,
    );
}

/// Make every credential.
pub fn make() -> Creds {
    let dir = TempDir::new();
    let work = dir.path("work");
    std::fs::create_dir(&work).unwrap();
    ca(&work, "ca");
    ca(&work, "other");
    signed(
        &work,
        "ca",
        "server",
        "localhost",
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    );
    let client_ext = "basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n";
    signed(&work, "ca", "client", "client", client_ext);
    signed(&work, "other", "stranger", "stranger", client_ext);
    let layout = |name: &str, files: &[(&str, &str)]| {
        let d = dir.path(name);
        std::fs::create_dir(&d).unwrap();
        for (from, to) in files {
            std::fs::copy(work.join(from), d.join(to)).unwrap();
        }
        d
    };
    let server = layout(
        "server",
        &[
            ("ca-cert.pem", "ca-cert.pem"),
            ("server-cert.pem", "server-cert.pem"),
            ("server-key.pem", "server-key.pem"),
        ],
    );
    let client = layout(
        "client",
        &[
            ("ca-cert.pem", "ca-cert.pem"),
            ("client-cert.pem", "client-cert.pem"),
            ("client-key.pem", "client-key.pem"),
        ],
    );
    let stranger = layout(
        "stranger",
        &[
            ("ca-cert.pem", "ca-cert.pem"),
            ("stranger-cert.pem", "client-cert.pem"),
            ("stranger-key.pem", "client-key.pem"),
        ],
    );
    Creds {
        _dir: dir,
        server,
        client,
        stranger,
    }
}

/// A path as an argument.
pub fn arg(p: &Path) -> String {
    s(p)
}
