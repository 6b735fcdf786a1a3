//! The commands: one file per verb, each with its arguments (`Args`, or a
//! subcommand enum) and its `exec`. This file is the table of contents:
//! the command line ([`Cli`]), the verbs ([`Command`]) and the dispatch,
//! one line per verb. Commands use the rooms below them (`cluster`,
//! `transfer`, `io`, `serve`, `migrate`), never each other.

mod attr;
mod check;
mod clone;
mod cluster;
mod compare;
mod create;
mod delete;
mod export;
mod export_diff;
mod import;
mod import_diff;
mod info;
mod list;
mod lock;
mod migrate;
mod node;
mod orphans;
mod resize;
mod restore;
mod serve;
mod snapshot;
mod tree;
mod vmstate;

use clap::{Parser, Subcommand};

use crate::cli::Global;
use crate::error::CliError;

/// Import, export, snapshot and clone Sheepdog volumes.
#[derive(Parser, Debug)]
#[command(name = "sheep-tool", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a VDI
    Create(create::Args),
    /// Copy a raw image (or stdin with -) into a VDI, creating it if needed
    Import(import::Args),
    /// Copy a VDI or snapshot into a raw image (or stdout with -)
    Export(export::Args),
    /// Compare two images (files or VDI[@SNAP]): exit 0 equal, 1 different, 2 error
    Compare(compare::Args),
    /// Write the changes between two snapshots as an rbd diff v1 stream
    ExportDiff(export_diff::Args),
    /// Apply an rbd diff stream (v1 or v2) or a dog vdi backup stream to a VDI, then snapshot it as the diff's TO
    ImportDiff(import_diff::Args),
    /// The VM state QEMU's savevm kept with a snapshot: export
    #[command(subcommand)]
    Vmstate(vmstate::Command),
    /// VDI attributes, as dog vdi setattr/getattr keep them: list, get, set, delete
    #[command(subcommand)]
    Attr(attr::Command),
    /// Snapshots: create, list, delete, rollback
    #[command(subcommand)]
    Snapshot(snapshot::Command),
    /// Clone a snapshot into a new VDI
    Clone(clone::Args),
    /// List every VDI and snapshot
    List(list::Args),
    /// Show a VDI or snapshot
    Info(info::Args),
    /// Delete a VDI or a snapshot
    Delete(delete::Args),
    /// Serve VDIs and snapshots over NBD (to QEMU, qemu-img, nbdcopy, the kernel)
    Serve(serve::Args),
    /// Grow a VDI
    Resize(resize::Args),
    /// Move VDIs with their snapshots, clones, attributes and VM states into Ceph (rbd:POOL) or a backup set
    Migrate(migrate::Args),
    /// Bring a backup set that migrate wrote back into the cluster
    Restore(restore::Args),
    /// Check every copy of every object of VDIs (exit 0 all good, 1 findings left, 2 error); --repair fixes them
    Check(check::Args),
    /// Objects the nodes store that nothing reaches; --delete removes them
    Orphans(orphans::Args),
    /// VDI locks (clusters formatted with -l): list, unlock
    #[command(subcommand)]
    Lock(lock::Command),
    /// The snapshot and clone hierarchy
    Tree(tree::Args),
    /// The cluster's nodes: list
    #[command(subcommand)]
    Node(node::Command),
    /// The cluster: info
    #[command(subcommand)]
    Cluster(cluster::Command),
}

/// Run the command `cli` names.
pub fn exec(cli: &Cli) -> Result<(), CliError> {
    let g = &cli.global;
    match &cli.command {
        Command::Create(a) => create::exec(g, a),
        Command::Import(a) => import::exec(g, a),
        Command::Export(a) => export::exec(g, a),
        Command::Compare(a) => compare::exec(g, a),
        Command::ExportDiff(a) => export_diff::exec(g, a),
        Command::ImportDiff(a) => import_diff::exec(g, a),
        Command::Vmstate(c) => vmstate::exec(g, c),
        Command::Attr(c) => attr::exec(g, c),
        Command::Snapshot(c) => snapshot::exec(g, c),
        Command::Clone(a) => clone::exec(g, a),
        Command::List(a) => list::exec(g, a),
        Command::Info(a) => info::exec(g, a),
        Command::Delete(a) => delete::exec(g, a),
        Command::Serve(a) => serve::exec(g, a),
        Command::Resize(a) => resize::exec(g, a),
        Command::Migrate(a) => migrate::exec(g, a),
        Command::Restore(a) => restore::exec(g, a),
        Command::Check(a) => check::exec(g, a),
        Command::Orphans(a) => orphans::exec(g, a),
        Command::Lock(c) => lock::exec(g, c),
        Command::Tree(a) => tree::exec(g, a),
        Command::Node(c) => node::exec(g, c),
        Command::Cluster(c) => cluster::exec(g, c),
    }
}
