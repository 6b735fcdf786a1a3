//! `sheep-ref`: the reference Sheepdog 1.0 server of `sheepdog-tests` as a
//! process, for CI and quick starts.
//!
//! ```text
//! sheep-ref [--listen 127.0.0.1:7000] [--dir PATH] [--lock]
//!           [--block-size-shift N] [--copies N] [--reorder]
//! ```
//!
//! Prints `sheep-ref listening on ADDR` once it accepts connections and
//! serves until killed. Objects live in memory unless `--dir` names a
//! directory (created if needed; reopening it picks up earlier VDIs).

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use sheepdog_tests::server::{net, Cluster, ClusterConfig, DirStore, NetOptions};

const USAGE: &str = "usage: sheep-ref [--listen ADDR:PORT] [--dir PATH] [--lock] \
[--block-size-shift 20..31] [--copies 1..31] [--reorder]";

struct Args {
    listen: SocketAddr,
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
    let mut cluster = match &args.dir {
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
    let listener = match TcpListener::bind(args.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("sheep-ref: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().unwrap_or(args.listen);
    cluster.set_local_addr(addr);
    println!("sheep-ref listening on {addr}");
    let _ = std::io::stdout().flush();
    net::serve(listener, Arc::new(Mutex::new(cluster)), args.net);
    ExitCode::SUCCESS
}
