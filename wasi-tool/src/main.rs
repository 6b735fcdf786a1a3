//! sheep-tool: import, export, snapshot and clone Sheepdog volumes, serve
//! them over NBD, and move them with their history into Ceph or a backup
//! set, natively or as a WASI 0.2 component under wasmtime.
//!
//! The rooms, from the top (ARCHITECTURE.md): `commands` (one file per
//! verb), then `serve`, `migrate` and `transfer`, then `cluster`, then
//! `io`; `cli`, `date`, `error`, `size` and `target` are shared by all.

mod cli;
mod cluster;
mod commands;
mod date;
mod error;
mod health;
mod io;
mod migrate;
mod serve;
mod size;
mod target;
mod transfer;

use std::process::ExitCode;

use clap::Parser;

use commands::{Cli, Command};
use error::Kind;

fn main() -> ExitCode {
    // `wasmtime run tool.wasm -- import ...` passes the `--` on: drop a lone
    // leading one so the command is still found.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "--") {
        args.remove(1);
    }
    let cli = Cli::parse_from(args);
    match commands::exec(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == Kind::Partial => {
            eprintln!("sheep-tool: {e}");
            ExitCode::from(3)
        }
        Err(e) if e.kind() == Kind::Different => {
            println!("{e}");
            ExitCode::from(1)
        }
        Err(e) if e.kind() == Kind::Findings => {
            eprintln!("sheep-tool: {e}");
            ExitCode::from(1)
        }
        // qemu-img compare's contract: 1 is "different", errors are 2;
        // check and orphans keep it.
        Err(e)
            if matches!(
                cli.command,
                Command::Compare(_) | Command::Check(_) | Command::Orphans(_)
            ) =>
        {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
