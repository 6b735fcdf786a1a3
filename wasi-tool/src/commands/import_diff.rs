//! `import-diff FILE|- VDI [--force]`: apply an `rbd diff` stream (v1 or
//! v2) or a `dog vdi backup` stream to VDI (`transfer::diff_import`), then
//! snapshot it as the diff's TO, as `rbd import-diff` does.

use sheepdog_core::engine::ControlDone;

use crate::cli::Global;
use crate::cluster::session::{close, open, run, unexpected};
use crate::cluster::vdis::collect;
use crate::cluster::DEFAULT_QUEUE_DEPTH;
use crate::error::CliError;
use crate::io::input;
use crate::target::Target;
use crate::transfer::diff_import::{self, Options};

/// Arguments of `import-diff`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The diff, or - for stdin
    file: String,
    /// VDI name
    vdi: String,
    /// Apply it even if the VDI lacks the diff's FROM snapshot
    #[arg(long)]
    force: bool,
    /// Writes in flight
    #[arg(long, default_value_t = DEFAULT_QUEUE_DEPTH)]
    queue_depth: usize,
}

pub fn exec(g: &Global, a: &Args) -> Result<(), CliError> {
    let t = Target::parse_plain(&a.vdi)?;
    let mut input = input::reader(&a.file)?;
    let snapshots: Vec<String> = collect(&mut g.connect(&t)?)?
        .iter()
        .filter(|r| r.is_snapshot_of(&t.name))
        .map(|r| r.tag().to_owned())
        .collect();
    let mut client = g.connect(&t)?;
    open(&mut client, &t, false)?;
    let opts = Options {
        file: &a.file,
        force: a.force,
        snapshots: &snapshots,
        depth: a.queue_depth,
        quiet: g.quiet,
    };
    let res = diff_import::apply(&mut client, &t.name, &mut *input, &opts).and_then(|applied| {
        if let Some(tag) = &applied.to {
            let what = format!("{}@{tag}", t.name);
            match run(&mut client, &what, |e| e.snapshot(tag))? {
                ControlDone::Snapshot { .. } => {}
                other => return Err(unexpected(&other)),
            }
        }
        Ok(applied)
    });
    let closed = close(&mut client, &t.name);
    let applied = res?;
    closed?;
    let snap = applied
        .to
        .map_or(String::new(), |t| format!(", snapshot {t} created"));
    g.note(format!(
        "applied {} to {} ({} bytes of data{snap})",
        a.file, t.name, applied.written
    ));
    Ok(())
}
