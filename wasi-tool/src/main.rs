//! sheep-tool: import, export, snapshot and clone Sheepdog volumes, and
//! serve them over NBD, natively or as a WASI 0.2 component under wasmtime.

mod attr;
mod btree;
mod cli;
mod client;
mod commands;
mod compare;
mod diff_export;
mod diff_import;
mod error;
mod export;
mod gateways;
mod holes;
mod import;
mod list;
mod outfile;
mod pipe;
mod progress;
mod raw;
mod readiness;
mod requests;
mod sendfile;
mod serve;
mod session;
mod size;
mod target;
mod transfer;
mod verify;
mod vmstate;

use std::process::ExitCode;

use clap::Parser;

use cli::{AttrCommand, Cli, Command, SnapshotCommand, VmstateCommand};
use error::CliError;

fn run(cli: &Cli) -> Result<(), CliError> {
    match &cli.command {
        Command::Create {
            vdi,
            size,
            copies,
            object_size,
            prealloc,
            hyper,
        } => commands::create(
            cli,
            vdi,
            size,
            copies.as_deref(),
            object_size.as_deref(),
            *prealloc,
            *hyper,
        ),
        Command::Import {
            file,
            vdi,
            size,
            io,
        } => import::import(cli, file, vdi, size.as_deref(), io),
        Command::Export {
            vdi,
            file,
            salvage,
            io,
        } => export::export(cli, vdi, file, *salvage, io),
        Command::Attr(AttrCommand::List { vdi, json }) => attr::list(cli, vdi, *json),
        Command::Attr(AttrCommand::Get { vdi, key }) => attr::get(cli, vdi, key),
        Command::Attr(AttrCommand::Set {
            vdi,
            key,
            value,
            file,
            exclusive,
        }) => attr::set(cli, vdi, key, value.as_deref(), file.as_deref(), *exclusive),
        Command::Attr(AttrCommand::Delete { vdi, key }) => attr::delete(cli, vdi, key),
        Command::Snapshot(SnapshotCommand::Create {
            vdi,
            tag,
            vmstate,
            vm_clock,
        }) => commands::snapshot(cli, vdi, tag.as_deref(), vmstate.as_deref(), *vm_clock),
        Command::Vmstate(VmstateCommand::Export { snapshot, file }) => {
            vmstate::export(cli, snapshot, file)
        }
        Command::Snapshot(SnapshotCommand::List { vdi, json }) => list::snapshots(cli, vdi, *json),
        Command::Snapshot(SnapshotCommand::Delete { snapshot }) => {
            commands::delete(cli, snapshot, true)
        }
        Command::Snapshot(SnapshotCommand::Rollback { snapshot }) => {
            commands::rollback(cli, snapshot)
        }
        Command::Clone { snapshot, new_vdi } => commands::clone(cli, snapshot, new_vdi),
        Command::List { json } => list::list(cli, *json),
        Command::Info { vdi, json } => commands::info(cli, vdi, *json),
        Command::Delete { vdi } => commands::delete(cli, vdi, false),
        Command::Resize { vdi, size } => commands::resize(cli, vdi, size),
        Command::Serve(args) => serve::serve(cli, args),
        Command::Compare { a, b, queue_depth } => compare::compare(cli, a, b, *queue_depth),
        Command::ExportDiff {
            vdi,
            file,
            from,
            exact,
            queue_depth,
            ..
        } => diff_export::export_diff(cli, vdi, from.as_deref(), *exact, file, *queue_depth),
        Command::ImportDiff {
            file,
            vdi,
            force,
            queue_depth,
        } => diff_import::import_diff(cli, file, vdi, *force, *queue_depth),
    }
}

fn main() -> ExitCode {
    // `wasmtime run tool.wasm -- import ...` passes the `--` on: drop a lone
    // leading one so the command is still found.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "--") {
        args.remove(1);
    }
    let cli = Cli::parse_from(args);
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == error::Kind::Partial => {
            eprintln!("sheep-tool: {e}");
            ExitCode::from(3)
        }
        Err(e) if e.kind() == error::Kind::Different => {
            println!("{e}");
            ExitCode::from(1)
        }
        // qemu-img compare's contract: 1 is "different", errors are 2.
        Err(e) if matches!(cli.command, Command::Compare { .. }) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
