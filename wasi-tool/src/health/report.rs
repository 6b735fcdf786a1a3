//! How check and orphans say what they found: one line per object with
//! findings, naming each bad copy and the node that holds it, and a
//! summary; or the same as JSON.

use serde_json::{json, Value};
use sheepdog_core::oid::{Oid, OidKind};
use sheepdog_core::verdict::Copy;

use super::check::{Finding, Outcome};
use super::objects::Volume;
use super::orphans::{Census, Orphan};
use crate::size::human;

/// What an object is, as words: `inode`, `data 12`, `vmstate 0`,
/// `btree leaf 1`, `attribute 3`, `ledger of data 4`.
pub fn what(oid: Oid) -> String {
    match oid.kind() {
        OidKind::Inode => "inode".into(),
        OidKind::Data => format!("data {}", oid.index()),
        OidKind::Vmstate => format!("vmstate {}", oid.index()),
        OidKind::Btree => format!("btree leaf {}", oid.index()),
        OidKind::Attr => format!("attribute {}", oid.index()),
        OidKind::Ledger => format!("ledger of data {}", oid.index()),
    }
}

fn state(c: Copy) -> &'static str {
    match c {
        Copy::Good => "good",
        Copy::Missing => "missing",
        Copy::Differs => "differs",
    }
}

/// The line for one finding.
pub fn finding_line(f: &Finding) -> String {
    let copy = if f.strips { "strip" } else { "copy" };
    let present = f.copies.iter().filter(|c| c.state != Copy::Missing).count();
    let mut parts: Vec<String> = f
        .copies
        .iter()
        .filter(|c| c.state == Copy::Missing || (f.repairable && c.state == Copy::Differs))
        .map(|c| {
            let note = c
                .note
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default();
            format!("{copy} {} on {} {}{note}", c.index, c.node, state(c.state))
        })
        .collect();
    if !f.repairable && present > 0 {
        let on: Vec<String> = f
            .copies
            .iter()
            .filter(|c| c.state != Copy::Missing)
            .map(|c| format!("{} on {}", c.index, c.node))
            .collect();
        parts.push(format!(
            "{copy}s {} disagree and no {} can be trusted over the others",
            on.join(", "),
            if f.strips {
                "set of strips"
            } else {
                "majority"
            }
        ));
    }
    let end = if f.repaired {
        "repaired"
    } else if present == 0 {
        "no node has it"
    } else if !f.repairable {
        "not repairable"
    } else {
        "repairable with --repair"
    };
    format!(
        "{}: {} ({}): {}; {end}",
        f.vdi,
        f.oid,
        what(f.oid),
        parts.join(", ")
    )
}

/// Print a check's findings and summary.
pub fn print_check(volumes: &[Volume], out: &Outcome) {
    for v in volumes {
        if let Some(why) = &v.broken {
            crate::io::stdout::line(format_args!("{}: {why}", v.label));
        }
    }
    for f in &out.findings {
        crate::io::stdout::line(format_args!("{}", finding_line(f)));
    }
    crate::io::stdout::line(format_args!("{}", summary(volumes, out)));
}

/// The summary line of a check.
pub fn summary(volumes: &[Volume], out: &Outcome) -> String {
    let repaired = out.findings.iter().filter(|f| f.repaired).count();
    let broken = volumes.iter().filter(|v| v.broken.is_some()).count();
    let mut s = format!(
        "checked {} VDI{}: {} object{}, {} copies",
        volumes.len(),
        if volumes.len() == 1 { "" } else { "s" },
        out.objects,
        if out.objects == 1 { "" } else { "s" },
        out.copies
    );
    if out.findings.is_empty() && broken == 0 {
        s.push_str(": all good");
        return s;
    }
    if !out.findings.is_empty() {
        s.push_str(&format!(
            "; {} with bad or missing copies, {repaired} repaired",
            out.findings.len()
        ));
    }
    if broken > 0 {
        s.push_str(&format!(
            "; {broken} broken inode{}",
            if broken == 1 { "" } else { "s" }
        ));
    }
    s
}

/// A check as JSON.
pub fn check_json(volumes: &[Volume], out: &Outcome, requests: u64) -> Value {
    let vdis: Vec<Value> = volumes
        .iter()
        .map(|v| {
            json!({
                "vdi": v.label,
                "vid": format!("{:x}", v.vid),
                "objects": v.objects.len(),
                "copies": v.copies,
                "copy_policy": v.copy_policy,
                "broken": v.broken,
            })
        })
        .collect();
    let findings: Vec<Value> = out
        .findings
        .iter()
        .map(|f| {
            json!({
                "vdi": f.vdi,
                "oid": f.oid.to_string(),
                "object": what(f.oid),
                "strips": f.strips,
                "copies": f.copies.iter().map(|c| json!({
                    "copy": c.index,
                    "node": c.node.to_string(),
                    "state": state(c.state),
                    "error": c.note,
                })).collect::<Vec<_>>(),
                "repairable": f.repairable,
                "repaired": f.repaired,
            })
        })
        .collect();
    json!({
        "vdis": vdis,
        "objects": out.objects,
        "copies": out.copies,
        "requests": requests,
        "findings": findings,
        "clean": out.findings.iter().all(|f| f.repaired) && volumes.iter().all(|v| v.broken.is_none()),
    })
}

fn orphan_json(o: &Orphan, nodes: &[std::net::SocketAddr]) -> Value {
    json!({
        "oid": o.oid.to_string(),
        "object": what(o.oid),
        "vid": format!("{:x}", o.oid.vid_bits()),
        "nodes": o.holders.iter().map(|&n| nodes[n].to_string()).collect::<Vec<_>>(),
        "bytes": o.bytes,
    })
}

/// Print a census: one line per orphan and a summary.
pub fn print_census(c: &Census, nodes: &[std::net::SocketAddr]) {
    for why in &c.unknown {
        crate::io::stdout::line(format_args!("{why}: what it reaches is not known"));
    }
    for o in &c.orphans {
        let on: Vec<String> = o.holders.iter().map(|&n| nodes[n].to_string()).collect();
        crate::io::stdout::line(format_args!(
            "{} ({}, VID {:x}): {} on {}",
            o.oid,
            what(o.oid),
            o.oid.vid_bits(),
            human(o.bytes),
            on.join(", ")
        ));
    }
    crate::io::stdout::line(format_args!("{}", census_summary(c)));
}

/// The summary line of a census.
pub fn census_summary(c: &Census) -> String {
    let bytes: u64 = c.orphans.iter().map(|o| o.bytes).sum();
    format!(
        "{} orphan object{} ({}) of {} stored{}",
        c.orphans.len(),
        if c.orphans.len() == 1 { "" } else { "s" },
        human(bytes),
        c.objects,
        if c.unknown.is_empty() {
            ""
        } else {
            "; partial: some inodes could not be read"
        }
    )
}

/// A census as JSON.
pub fn census_json(c: &Census, nodes: &[std::net::SocketAddr], deleted: Option<usize>) -> Value {
    json!({
        "objects": c.objects,
        "orphans": c.orphans.iter().map(|o| orphan_json(o, nodes)).collect::<Vec<_>>(),
        "bytes": c.orphans.iter().map(|o| o.bytes).sum::<u64>(),
        "unreadable": c.unknown,
        "deleted": deleted,
    })
}
