//! `export-diff VDI[@TO] [--from SNAP] [--exact] FILE|-`: the changes from
//! snapshot FROM to TO as an `rbd diff v1` stream, which `rbd import-diff`
//! and `import-diff` apply (`transfer::diff_export`).

use crate::cli::Global;
use crate::cluster::session::{close, open};
use crate::cluster::DEFAULT_QUEUE_DEPTH;
use crate::error::CliError;
use crate::io::output::OutputPath;
use crate::target::{Snap, Target};
use crate::transfer::diff_export::{self, From, Names};

/// Arguments of `export-diff`.
#[derive(clap::Args, Debug)]
pub struct Args {
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
    #[arg(long, default_value_t = DEFAULT_QUEUE_DEPTH)]
    queue_depth: usize,
}

pub fn exec(g: &Global, a: &Args) -> Result<(), CliError> {
    let t = Target::parse(&a.vdi)?;
    if a.exact && a.from.is_none() {
        return Err(CliError::msg(
            "--exact compares with the FROM snapshot: name it with --from",
        ));
    }
    // FROM's index; with --exact, its objects are read too.
    let mut from = match a.from.as_deref() {
        Some(f) => {
            let mut ft = t.clone();
            ft.snapshot = Some(Snap::parse(f));
            Some(From::read(g.connect(&ft)?, &ft, a.exact)?)
        }
        None => None,
    };
    let mut client = g.connect(&t)?;
    open(&mut client, &t, false)?;
    let name = t.display();
    let to = t.snapshot.as_ref().map(|s| match s {
        Snap::Tag(tag) => tag.clone(),
        Snap::Id(i) => i.to_string(),
    });
    let names = Names {
        from: a.from.as_deref(),
        to: to.as_deref(),
    };
    let path = OutputPath::new(&a.file);
    let res = path.writer().and_then(|mut out| {
        diff_export::write(
            &mut client,
            from.as_mut(),
            &names,
            a.queue_depth,
            &mut *out,
            &name,
        )
    });
    let closed = close(&mut client, &name);
    let from_closed = from.as_mut().map_or(Ok(()), From::close);
    if res.is_err() {
        // A diff cut short is never left to be taken for a whole one.
        path.abandon();
    }
    let stats = res.map_err(|e| e.during(&format!("export-diff of {name}"), "run it again"))?;
    closed?;
    from_closed?;
    if !path.is_stdout() {
        g.note(format!(
            "exported the diff of {name}{} to {}: {} object{} read ({} read requests{}), {} released",
            a.from
                .as_deref()
                .map_or(String::new(), |f| format!(" from {f}")),
            a.file,
            stats.read,
            if stats.read == 1 { "" } else { "s" },
            stats.requests,
            if a.exact { ", FROM's copies included" } else { "" },
            stats.released
        ));
    }
    Ok(())
}
