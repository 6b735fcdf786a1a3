//! `sheep-ref`: the reference Sheepdog 1.0 server of `sheepdog-tests` as a
//! process, for CI and quick starts.
//!
//! ```text
//! sheep-ref [--listen 127.0.0.1:7000] [--nodes N] [--dir PATH] [--lock]
//!           [--block-size-shift N] [--copies N] [--reorder]
//! ```
//!
//! Prints `sheep-ref listening on ADDR` once it accepts connections and
//! serves until killed. Objects live in memory unless `--dir` names a
//! directory (created if needed; reopening it picks up earlier VDIs).
//!
//! With `--nodes N` (default 1) it is a cluster of N nodes over the one
//! store, on consecutive ports from the `--listen` port (free ports with
//! port 0), one `listening` line per node, in node order. Lines on stdin
//! control the nodes, each answered `ok` or `error: ...` on stdout:
//! `kill I` (listener closed, connections cut, gone from the node list,
//! epoch + 1), `blackhole I` (reads requests, never applies nor answers
//! them), `revive I` (answers again, on the same port), and `lose OID`
//! (16 hex digits, `0x` optional: the object is gone on every node, reads
//! answer NO_OBJ). The end of stdin only ends the controls, not the
//! server.

use std::io::{BufRead, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;

use sheepdog_core::oid::Oid;
use sheepdog_tests::server::{
    spawn_on, Cluster, ClusterConfig, DirStore, NetOptions, ServerHandle,
};

const USAGE: &str = "usage: sheep-ref [--listen ADDR:PORT] [--nodes 1..64] [--dir PATH] [--lock] \
[--block-size-shift 20..31] [--copies 1..31] [--reorder]";

struct Args {
    listen: SocketAddr,
    nodes: u8,
    dir: Option<String>,
    config: ClusterConfig,
    net: NetOptions,
}

fn value<'a>(flag: &str, it: &mut impl Iterator<Item = &'a String>) -> Result<&'a str, String> {
    it.next()
        .map(String::as_str)
        .ok_or_else(|| format!("{flag} needs a value"))
}

fn number(flag: &str, v: &str, lo: u8, hi: u8) -> Result<u8, String> {
    match v.parse::<u8>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(format!(
            "{flag} must be a number from {lo} to {hi}, not {v:?}"
        )),
    }
}

fn parse(argv: &[String]) -> Result<Args, String> {
    let mut args = Args {
        listen: SocketAddr::from(([127, 0, 0, 1], 7000)),
        nodes: 1,
        dir: None,
        config: ClusterConfig::default(),
        net: NetOptions::default(),
    };
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--listen" => {
                let v = value(flag, &mut it)?;
                args.listen = v
                    .parse()
                    .map_err(|_| format!("--listen wants ADDR:PORT, not {v:?}"))?;
            }
            "--nodes" => args.nodes = number(flag, value(flag, &mut it)?, 1, 64)?,
            "--dir" => args.dir = Some(value(flag, &mut it)?.to_owned()),
            "--lock" => args.config = args.config.with_locking(true),
            "--block-size-shift" => {
                let n = number(flag, value(flag, &mut it)?, 20, 31)?;
                args.config.block_size_shift = n;
            }
            "--copies" => args.config.copies = number(flag, value(flag, &mut it)?, 1, 31)?,
            "--reorder" => args.net.reorder = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse(&argv) {
        Ok(a) => a,
        Err(msg) if msg.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("sheep-ref: {msg} ({USAGE})");
            return ExitCode::from(2);
        }
    };
    let cluster = match &args.dir {
        None => Cluster::new(args.config),
        Some(dir) => {
            let opened = DirStore::open(dir)
                .and_then(|store| Cluster::with_store(args.config, Box::new(store)));
            match opened {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("sheep-ref: cannot use directory {dir}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    let mut listeners = Vec::new();
    for i in 0..u16::from(args.nodes) {
        let mut addr = args.listen;
        if addr.port() != 0 {
            let Some(port) = addr.port().checked_add(i) else {
                eprintln!("sheep-ref: no port {} + {i} for node {i}", addr.port());
                return ExitCode::FAILURE;
            };
            addr.set_port(port);
        }
        match TcpListener::bind(addr) {
            Ok(l) => listeners.push(l),
            Err(e) => {
                eprintln!("sheep-ref: cannot listen on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let handle = match spawn_on(listeners, cluster, args.net) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("sheep-ref: cannot serve: {e}");
            return ExitCode::FAILURE;
        }
    };
    for a in handle.addrs() {
        println!("sheep-ref listening on {a}");
    }
    let _ = std::io::stdout().flush();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        match control(&handle, line.trim()) {
            Ok(()) => println!("ok"),
            Err(e) => println!("error: {e}"),
        }
        let _ = std::io::stdout().flush();
    }
    // Serve until killed.
    loop {
        std::thread::park();
    }
}

/// Run one control line.
fn control(h: &ServerHandle, line: &str) -> Result<(), String> {
    let mut words = line.split_whitespace();
    let (Some(cmd), Some(arg), None) = (words.next(), words.next(), words.next()) else {
        return Err(format!(
            "want 'kill I', 'blackhole I', 'revive I' or 'lose OID', not {line:?}"
        ));
    };
    let node = || match arg.parse::<usize>() {
        Ok(i) if i < h.node_count() => Ok(i),
        _ => Err(format!("no node {arg:?} (there are {})", h.node_count())),
    };
    match cmd {
        "kill" => h.kill(node()?),
        "blackhole" => h.blackhole(node()?),
        "revive" => h.try_revive(node()?).map_err(|e| e.to_string())?,
        "lose" => {
            let hex = arg.strip_prefix("0x").unwrap_or(arg);
            let oid = Some(hex)
                .filter(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|h| u64::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("{arg:?} is not an oid (16 hex digits)"))?;
            if !h.cluster().lose_object(Oid(oid)) {
                return Err(format!("no object {hex}"));
            }
        }
        other => return Err(format!("unknown control {other:?}")),
    }
    Ok(())
}
