//! Which VDI (and snapshot) a command argument names, and on which server.

use sheepdog_core::address::{parse_vdi_address, Snapshot};

use crate::error::CliError;

/// A parsed VDI argument.
#[derive(Debug, Clone)]
pub struct Target {
    /// Server named in the argument itself (URI or QEMU form).
    pub server: Option<String>,
    /// VDI name.
    pub name: String,
    /// Snapshot tag or id.
    pub snapshot: Option<Snap>,
}

/// An owned snapshot selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Snap {
    /// By tag.
    Tag(String),
    /// By id.
    Id(u32),
}

impl Target {
    /// Parse `vdi`, `vdi@SNAP`, QEMU's forms or a `sheepdog://` URI.
    pub fn parse(arg: &str) -> Result<Target, CliError> {
        let a =
            parse_vdi_address(arg).map_err(|e| CliError::msg(format!("bad VDI '{arg}': {e}")))?;
        Ok(Target {
            server: a.server.map(|s| match (s.host.contains(':'), s.port) {
                (true, Some(p)) => format!("[{}]:{p}", s.host),
                (false, Some(p)) => format!("{}:{p}", s.host),
                (_, None) => s.host.to_owned(),
            }),
            name: a.name.to_owned(),
            snapshot: a.snapshot.map(|s| match s {
                Snapshot::Tag(t) => Snap::Tag(t.to_owned()),
                Snapshot::Id(i) => Snap::Id(i),
            }),
        })
    }

    /// Parse an argument that must name a working VDI (no snapshot).
    pub fn parse_plain(arg: &str) -> Result<Target, CliError> {
        let t = Target::parse(arg)?;
        if t.snapshot.is_some() {
            return Err(CliError::msg(format!(
                "'{arg}' names a snapshot; give the VDI name"
            )));
        }
        Ok(t)
    }

    /// Parse an argument that must name a snapshot.
    pub fn parse_snapshot(arg: &str) -> Result<Target, CliError> {
        let t = Target::parse(arg)?;
        if t.snapshot.is_none() {
            return Err(CliError::msg(format!(
                "'{arg}' names no snapshot; use VDI@SNAP"
            )));
        }
        Ok(t)
    }

    /// The selector for the engine.
    pub fn selector(&self) -> Option<Snapshot<'_>> {
        self.snapshot.as_ref().map(|s| match s {
            Snap::Tag(t) => Snapshot::Tag(t),
            Snap::Id(i) => Snapshot::Id(*i),
        })
    }

    /// How messages name it.
    pub fn display(&self) -> String {
        match &self.snapshot {
            None => self.name.clone(),
            Some(Snap::Tag(t)) => format!("{}@{t}", self.name),
            Some(Snap::Id(i)) => format!("{}@{i}", self.name),
        }
    }
}

impl Snap {
    /// A snapshot named by tag, or by id when it is all digits.
    pub fn parse(s: &str) -> Snap {
        match s.parse::<u32>() {
            Ok(i) => Snap::Id(i),
            Err(_) => Snap::Tag(s.to_owned()),
        }
    }
}
