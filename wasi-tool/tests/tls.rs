//! `serve --tls-creds`: TLS the way QEMU and nbdkit offer it, used by
//! QEMU's own x509 client (qemu-img, qemu-io) and libnbd's `nbds://`
//! (nbdinfo, nbdcopy); a plain-text client refused where TLS is required;
//! client certificates checked with `--tls-verify-peer`. Natively and under
//! wasmtime.

mod common;

use common::certs::{self, arg};
use common::nbd::{client, ok, output, serve, Serve};
use common::*;

/// A VDI `vm` of 8 MiB on `h`, and its bytes.
fn vm(h: &sheepdog_tests::server::ServerHandle) -> (Vec<u8>, TempDir) {
    let dir = TempDir::new();
    let img = random(31, 8 * MIB);
    assert_ok(&import(h, &dir, "vm", &img));
    (img, dir)
}

/// QEMU's client options for TLS with the credentials in `dir`, and the
/// export `vm` of `srv`.
fn qemu_tls(srv: &Serve, dir: &std::path::Path) -> Vec<String> {
    vec![
        "--object".into(),
        format!("tls-creds-x509,id=tls0,endpoint=client,dir={}", arg(dir)),
        "--image-opts".into(),
        format!(
            "driver=nbd,server.type=inet,server.host=127.0.0.1,server.port={},export=vm,tls-creds=tls0",
            srv.port
        ),
    ]
}

/// libnbd's URI of `vm` over TLS with the credentials in `dir`.
fn nbds(srv: &Serve, dir: &std::path::Path) -> String {
    format!(
        "nbds://localhost:{}/vm?tls-certificates={}",
        srv.port,
        arg(dir)
    )
}

#[test]
fn qemu_and_libnbd_clients_read_and_write_over_tls() {
    let h = server();
    let (img, dir) = vm(&h);
    let creds = certs::make();
    let srv = serve(&h, &["vm", "--tls-creds", &arg(&creds.server)]);
    // qemu-img (GnuTLS, QEMU's x509 client): info, and a whole read.
    let mut c = client("qemu-img");
    c.args(["info", "--output=json"])
        .args(qemu_tls(&srv, &creds.client));
    assert!(ok(c).contains("\"virtual-size\": 8388608"));
    let back = dir.path("back.raw");
    let mut c = client("qemu-img");
    c.arg("convert")
        .args(["-O", "raw"])
        .args(qemu_tls(&srv, &creds.client))
        .arg(s(&back));
    ok(c);
    assert!(
        std::fs::read(&back).unwrap() == img,
        "qemu-img read over TLS"
    );
    // qemu-io writes over TLS.
    let mut c = client("qemu-io");
    c.args(["-c", "write -P 0x5a 1048576 65536"])
        .args(qemu_tls(&srv, &creds.client));
    ok(c);
    // nbdinfo and nbdcopy over nbds://.
    let mut c = client("nbdinfo");
    c.arg(nbds(&srv, &creds.client));
    let info = ok(c);
    assert!(info.contains("export-size: 8388608"), "{info}");
    assert!(info.contains("with TLS"), "{info}");
    let out = dir.path("copy.raw");
    let mut c = client("nbdcopy");
    c.args([nbds(&srv, &creds.client), s(&out)]);
    ok(c);
    let mut want = img.clone();
    want[1 << 20..(1 << 20) + 65536].fill(0x5a);
    assert!(
        std::fs::read(&out).unwrap() == want,
        "nbdcopy read over TLS"
    );
    let (_, log) = srv.stop();
    assert!(!log.contains("closing"), "{log}");
}

#[test]
fn a_plain_text_client_is_refused_where_tls_is_required() {
    let h = server();
    let _ = vm(&h);
    let creds = certs::make();
    let srv = serve(&h, &["vm", "--tls-creds", &arg(&creds.server)]);
    let mut c = client("nbdinfo");
    c.arg(srv.uri("vm"));
    let o = output(c);
    assert!(!o.status.success(), "a plain-text client was served");
    let mut c = client("qemu-img");
    c.args(["info", &srv.uri("vm")]);
    let o = output(c);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("TLS"), "qemu-img says why: {err}");
    // With --tls on, plain text is served too, and TLS still works.
    let srv = serve(
        &h,
        &["vm", "--tls-creds", &arg(&creds.server), "--tls", "on"],
    );
    let mut c = client("nbdinfo");
    c.arg(srv.uri("vm"));
    assert!(ok(c).contains("export-size: 8388608"));
    let mut c = client("nbdinfo");
    c.arg(nbds(&srv, &creds.client));
    ok(c);
}

#[test]
fn tls_verify_peer_takes_only_clients_the_ca_signed() {
    let h = server();
    let _ = vm(&h);
    let creds = certs::make();
    let srv = serve(
        &h,
        &[
            "vm",
            "--tls-creds",
            &arg(&creds.server),
            "--tls-verify-peer",
        ],
    );
    let mut c = client("nbdinfo");
    c.arg(nbds(&srv, &creds.client));
    assert!(ok(c).contains("export-size: 8388608"));
    let mut c = client("nbdinfo");
    c.arg(nbds(&srv, &creds.stranger));
    assert!(
        !output(c).status.success(),
        "a certificate of another CA was taken"
    );
    let mut c = client("qemu-img");
    c.args(["info"]).args(qemu_tls(&srv, &creds.client));
    ok(c);
}

#[test]
fn bad_tls_arguments_are_one_line_errors() {
    let h = server();
    let creds = certs::make();
    let dir = TempDir::new();
    for (args, says) in [
        (
            vec!["--tls-creds", "/nonexistent"],
            "--tls-creds /nonexistent: not a directory",
        ),
        (vec!["--tls-creds", &s(&dir.path(""))], "server-cert.pem"),
    ] {
        let mut c = tool(&h);
        c.args(["serve", "--listen", "127.0.0.1:0"]).args(&args);
        let r = run(c);
        assert_eq!(r.code, Some(1), "{r:?}");
        assert!(r.stderr.contains(says), "{args:?}: {r:?}");
        assert_eq!(r.stderr.trim().lines().count(), 1, "{r:?}");
    }
    // --tls without credentials: the command line is refused.
    let mut c = tool(&h);
    c.args(["serve", "--listen", "127.0.0.1:0", "--tls", "require"]);
    let r = run(c);
    assert_ne!(r.code, Some(0), "{r:?}");
    assert!(r.stderr.contains("--tls-creds"), "{r:?}");
    // A server cert without its key.
    let partial = dir.path("partial");
    std::fs::create_dir(&partial).unwrap();
    std::fs::copy(
        creds.server.join("server-cert.pem"),
        partial.join("server-cert.pem"),
    )
    .unwrap();
    let mut c = tool(&h);
    c.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--tls-creds",
        &s(&partial),
    ]);
    let r = run(c);
    assert!(r.stderr.contains("server-key.pem"), "{r:?}");
}
