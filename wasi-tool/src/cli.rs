//! The command line.

use clap::{Args, Parser, Subcommand};

/// Import, export, snapshot and clone Sheepdog volumes.
#[derive(Parser, Debug)]
#[command(name = "sheep-tool", version, about, max_term_width = 100)]
pub struct Cli {
    /// Sheepdog nodes HOST[:PORT], comma separated: the first that answers
    /// is the gateway, the others (and the ones the cluster names) are
    /// failed over to
    #[arg(
        short,
        long,
        global = true,
        env = "SHEEPDOG_ADDRESS",
        default_value = "127.0.0.1:7000",
        value_name = "NODES"
    )]
    pub address: String,
    /// How long a node may take to answer before the tool moves to another
    /// one, and how long it goes on trying when none answers (seconds, or
    /// with ms or s)
    #[arg(long, global = true, default_value = "30", value_name = "TIME",
          value_parser = parse_timeout)]
    pub timeout: std::time::Duration,
    /// Print nothing but errors
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Show progress on stderr even when it is not a terminal
    #[arg(long, global = true)]
    pub progress: bool,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The nodes to use: `server` when a VDI argument names one, else
    /// the `-a` list.
    pub fn gateways(
        &self,
        server: Option<&str>,
    ) -> Result<crate::gateways::Gateways, crate::error::CliError> {
        crate::gateways::Gateways::parse(server.unwrap_or(&self.address), self.timeout)
    }
}

/// `30`, `2.5`, `30s` or `500ms`: at least 1 ms, at most 20 minutes (the
/// longest wait the retries of a cluster state add up to).
fn parse_timeout(v: &str) -> Result<std::time::Duration, String> {
    let (num, scale) = match v.strip_suffix("ms") {
        Some(n) => (n, 1e-3),
        None => (v.strip_suffix('s').unwrap_or(v), 1.0),
    };
    match num.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n * scale >= 1e-3 && n * scale <= 1_200.0 => {
            Ok(std::time::Duration::from_secs_f64(n * scale))
        }
        _ => Err(format!(
            "'{v}' is not a timeout: give seconds (30, 2.5, 30s) or milliseconds (500ms), from 1ms to 20 minutes"
        )),
    }
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a VDI
    Create {
        /// VDI name
        vdi: String,
        /// Size (bytes, or with K, M, G, T, P)
        size: String,
        /// Copies (N) or erasure code (D:P); the cluster default if omitted
        #[arg(long)]
        copies: Option<String>,
        /// Object size, a power of two from 1M to 2G; the cluster default if omitted
        #[arg(long)]
        object_size: Option<String>,
        /// Allocate every object now
        #[arg(long)]
        prealloc: bool,
        /// A hyper volume (B-tree index, dog's -y): up to 16 PiB, 4 MiB objects
        #[arg(long, conflicts_with_all = ["prealloc", "object_size"])]
        hyper: bool,
    },
    /// Copy a raw image (or stdin with -) into a VDI, creating it if needed
    Import {
        /// Raw image file, or - for stdin
        file: String,
        /// VDI name
        vdi: String,
        /// Size of the VDI to create (default: the file's size rounded up to 512 bytes)
        #[arg(long)]
        size: Option<String>,
        #[command(flatten)]
        io: IoOpts,
    },
    /// Copy a VDI or snapshot into a raw image (or stdout with -)
    Export {
        /// VDI[@SNAP]
        vdi: String,
        /// Output file, or - for stdout
        file: String,
        /// Write zeros where the cluster cannot read an object (it has
        /// lost it, or answers EIO), list each on stderr, go on, and exit
        /// with status 3
        #[arg(long)]
        salvage: bool,
        #[command(flatten)]
        io: IoOpts,
    },
    /// Compare two images (files or VDI[@SNAP]): exit 0 equal, 1 different, 2 error
    Compare {
        /// A file, or VDI[@SNAP]
        a: String,
        /// A file, or VDI[@SNAP]
        b: String,
        /// Reads in flight per VDI
        #[arg(long, default_value_t = crate::client::DEFAULT_QUEUE_DEPTH)]
        queue_depth: usize,
    },
    /// Write the changes between two snapshots as an rbd diff v1 stream
    ExportDiff {
        /// VDI@TO (or VDI: its working data)
        vdi: String,
        /// Output file, or - for stdout
        file: String,
        /// The snapshot the diff starts from (tag or id); without it, all of TO
        #[arg(long, value_name = "SNAP")]
        from: Option<String>,
        /// Also read FROM's copy of each changed object, and send only the sectors that differ
        #[arg(long, conflicts_with = "whole_object")]
        exact: bool,
        /// Send each changed object whole, without its zero blocks (the default)
        #[arg(long)]
        whole_object: bool,
        /// Objects read at once
        #[arg(long, default_value_t = crate::client::DEFAULT_QUEUE_DEPTH)]
        queue_depth: usize,
    },
    /// Apply an rbd diff stream (v1 or v2) or a dog vdi backup stream to a VDI, then snapshot it as the diff's TO
    ImportDiff {
        /// The diff, or - for stdin
        file: String,
        /// VDI name
        vdi: String,
        /// Apply it even if the VDI lacks the diff's FROM snapshot
        #[arg(long)]
        force: bool,
        /// Writes in flight
        #[arg(long, default_value_t = crate::client::DEFAULT_QUEUE_DEPTH)]
        queue_depth: usize,
    },
    /// The VM state QEMU's savevm kept with a snapshot: export
    #[command(subcommand)]
    Vmstate(VmstateCommand),
    /// VDI attributes, as dog vdi setattr/getattr keep them: list, get, set, delete
    #[command(subcommand)]
    Attr(AttrCommand),
    /// Snapshots: create, list, delete, rollback
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Clone a snapshot into a new VDI
    Clone {
        /// VDI@SNAP
        snapshot: String,
        /// Name of the new VDI
        new_vdi: String,
    },
    /// List every VDI and snapshot
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Show a VDI or snapshot
    Info {
        /// VDI[@SNAP]
        vdi: String,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Delete a VDI or a snapshot
    Delete {
        /// VDI[@SNAP]
        vdi: String,
    },
    /// Serve VDIs and snapshots over NBD (to QEMU, qemu-img, nbdcopy, the kernel)
    Serve(ServeArgs),
    /// Grow a VDI
    Resize {
        /// VDI name
        vdi: String,
        /// New size (grow only)
        size: String,
    },
}

/// VM state commands.
#[derive(Subcommand, Debug)]
pub enum VmstateCommand {
    /// Write a snapshot's VM state (QEMU savevm) as the stream QEMU saved
    Export {
        /// VDI@SNAP
        snapshot: String,
        /// Output file, or - for stdout
        file: String,
    },
}

/// Attribute commands.
#[derive(Subcommand, Debug)]
pub enum AttrCommand {
    /// List the attributes of a VDI (with @SNAP, of that snapshot)
    List {
        /// VDI[@SNAP]
        vdi: String,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Print the value of an attribute, as it is
    Get {
        /// VDI[@SNAP]
        vdi: String,
        /// The key
        key: String,
    },
    /// Set an attribute (replacing its value, unless --exclusive)
    Set {
        /// VDI[@SNAP]
        vdi: String,
        /// The key (1 to 255 bytes)
        key: String,
        /// The value (up to 64 KiB); or --file
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        value: Option<String>,
        /// Read the value from this file (- for stdin)
        #[arg(long, value_name = "FILE")]
        file: Option<String>,
        /// Fail if the key exists (atomic across the cluster: a lock)
        #[arg(long)]
        exclusive: bool,
    },
    /// Delete an attribute
    Delete {
        /// VDI[@SNAP]
        vdi: String,
        /// The key
        key: String,
    },
}

/// Snapshot commands.
#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Snapshot a VDI
    Create {
        /// VDI name
        vdi: String,
        /// Tag for the snapshot
        #[arg(long)]
        tag: Option<String>,
        /// Store this file (- for stdin) as the snapshot's VM state, as QEMU's savevm did
        #[arg(long, value_name = "FILE")]
        vmstate: Option<String>,
        /// The VM clock (nanoseconds) to record with --vmstate
        #[arg(long, value_name = "NSEC", default_value_t = 0, requires = "vmstate")]
        vm_clock: u64,
    },
    /// List the snapshots of a VDI
    List {
        /// VDI name
        vdi: String,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Delete a snapshot
    Delete {
        /// VDI@SNAP
        snapshot: String,
    },
    /// Roll a VDI back to a snapshot
    Rollback {
        /// VDI@SNAP
        snapshot: String,
    },
}

/// Options of import and export.
#[derive(Args, Debug, Clone)]
pub struct IoOpts {
    /// Requests in flight
    #[arg(long, default_value_t = crate::client::DEFAULT_QUEUE_DEPTH)]
    pub queue_depth: usize,
    /// Largest request, a multiple of 4K up to 4M (default: whole objects up
    /// to 4M for import, 504K for export; see BENCHMARKS.md)
    #[arg(long, value_name = "SIZE")]
    pub request_size: Option<String>,
    /// Take the VDI lock (LOCK_VDI) for the duration; released on exit
    #[arg(long)]
    pub lock: bool,
    /// Then read every object again and compare its CRC32 with that of
    /// what was sent (import) or written out (export)
    #[arg(long)]
    pub verify: bool,
}

/// Options of serve.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Exports (VDI or VDI@SNAP); the first is the default export. Without
    /// any, every VDI of the cluster can be opened by name
    pub vdis: Vec<String>,
    /// Listen on HOST:PORT (default 127.0.0.1:10809, unless --socket is given)
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Listen on a Unix socket (nbd+unix:///VDI?socket=PATH)
    #[arg(long, value_name = "PATH")]
    pub socket: Option<String>,
    /// Serve every export read-only (snapshots always are)
    #[arg(long)]
    pub read_only: bool,
    /// Requests in flight to the cluster per export
    #[arg(long, default_value_t = crate::client::QUEUE_MAX)]
    pub queue_depth: usize,
    /// Do not take the VDI lock (LOCK_VDI) for writable exports
    #[arg(long)]
    pub no_lock: bool,
}
