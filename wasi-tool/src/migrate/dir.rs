//! `--to DIR`: a backup set. Per VDI a directory holding its manifest
//! (`manifest.json`: size, object size, copies, the snapshot chain with
//! ids, tags and times, the clone parent, attributes, VM state files, the
//! CRC32 of every object of every snapshot) and one `rbd diff v1` stream
//! per snapshot (whole for the first, from the one before after), each
//! one `rbd import-diff` takes, and each VM state as the stream QEMU saved.
//! Files are written under temporary names and renamed once whole, and a
//! snapshot counts once the manifest lists it: a killed run leaves nothing
//! that looks complete.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::crc;
use super::plan::TargetState;
use super::source::{Family, Snapshot};
use super::target::{image_name, meta_value, From, Target};
use crate::cluster::attrs::Attribute;
use crate::date;
use crate::error::{self, CliError};

/// What a manifest says it is.
pub const FORMAT: &str = "sheep-tool backup set 1";
/// The manifest's file name.
pub const MANIFEST: &str = "manifest.json";

/// A backup set's directory.
pub struct Dir {
    root: PathBuf,
    /// What `--verify` reads back: a scratch image of one VDI with its
    /// first diffs applied (how many), the next read back applying only
    /// the ones after.
    scratch: Option<Scratch>,
}

struct Scratch {
    vdi: String,
    applied: usize,
    path: PathBuf,
    file: File,
}

impl Drop for Dir {
    fn drop(&mut self) {
        self.drop_scratch();
    }
}

impl Dir {
    /// The set at `root`, made if it is not there.
    pub fn new(root: &str) -> Result<Dir, CliError> {
        fs::create_dir_all(root).map_err(|e| error::file(root, "make", &e))?;
        Ok(Dir {
            root: root.into(),
            scratch: None,
        })
    }

    fn vdi_dir(&self, name: &str) -> Result<PathBuf, CliError> {
        Ok(self.root.join(image_name(name)?))
    }

    /// The manifest of `name`, if there is one.
    pub fn manifest(&self, name: &str) -> Result<Option<Value>, CliError> {
        let p = self.vdi_dir(name)?.join(MANIFEST);
        read_manifest(&p)
    }

    fn save(&self, name: &str, m: &Value) -> Result<(), CliError> {
        let dir = self.vdi_dir(name)?;
        let text = serde_json::to_string_pretty(m)
            .map_err(|e| CliError::msg(format!("manifest of {name}: {e}")))?;
        write_atomic(&dir.join(MANIFEST), text.as_bytes())
    }

    fn edit(&self, name: &str, f: impl FnOnce(&mut Value)) -> Result<(), CliError> {
        let mut m = self
            .manifest(name)?
            .ok_or_else(|| CliError::msg(format!("{}: no manifest", self.show(name))))?;
        f(&mut m);
        self.save(name, &m)
    }

    fn fresh(&self, family: &Family, clone_of: Value) -> Result<(), CliError> {
        let dir = self.vdi_dir(&family.name)?;
        fs::create_dir_all(&dir).map_err(|e| error::file(&s(&dir), "make", &e))?;
        let m = json!({
            "format": FORMAT,
            "vdi": family.name,
            "size": family.size(),
            "object_size": family.object_size,
            "copies": family.copies,
            "hyper": family.hyper,
            "clone_of": clone_of,
            "attributes": [],
            "snapshots": [],
        });
        self.save(&family.name, &m)
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// A manifest from `path`, checked to be one.
pub fn read_manifest(path: &Path) -> Result<Option<Value>, CliError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(error::file(&s(path), "read", &e)),
    };
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| CliError::msg(format!("{}: not a manifest ({e})", s(path))))?;
    if v.get("format").and_then(Value::as_str) != Some(FORMAT) {
        return Err(CliError::msg(format!(
            "{}: not a manifest of {FORMAT}",
            s(path)
        )));
    }
    Ok(Some(v))
}

/// Write `bytes` to `path` under a temporary name, then rename: never a
/// half-written file under the name.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let tmp = tmp_of(path);
    let res = File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| fs::rename(&tmp, path));
    res.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        error::file(&s(path), "write", &e)
    })
}

fn tmp_of(path: &Path) -> PathBuf {
    let mut t = path.as_os_str().to_owned();
    t.push(".tmp");
    t.into()
}

/// Write what `write` writes to `path` under a temporary name, then
/// rename; the bytes written.
fn stream_atomic(
    path: &Path,
    write: &mut dyn FnMut(&mut dyn Write) -> Result<(), CliError>,
) -> Result<u64, CliError> {
    let tmp = tmp_of(path);
    let f = File::create(&tmp).map_err(|e| error::file(&s(&tmp), "write", &e))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
    let res = write(&mut w).and_then(|()| {
        let f = w
            .into_inner()
            .map_err(|e| error::file(&s(&tmp), "write", e.error()))?;
        f.sync_all()
            .map_err(|e| error::file(&s(&tmp), "write", &e))?;
        let n = f.metadata().map(|m| m.len()).unwrap_or(0);
        fs::rename(&tmp, path).map_err(|e| error::file(&s(path), "write", &e))?;
        Ok(n)
    });
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// The file of snapshot number `n` (from 1) named `name`.
pub fn diff_file(n: usize, name: &str) -> String {
    format!("{n:04}-{name}.diff")
}

/// The snapshots a manifest lists: name, diff file, size.
pub fn listed(m: &Value) -> Vec<(String, String, u64)> {
    m.get("snapshots")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| {
                    Some((
                        s.get("name")?.as_str()?.to_owned(),
                        s.get("diff")?.as_str()?.to_owned(),
                        s.get("size")?.as_u64()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The VDI and snapshot a manifest's VDI was cloned from.
pub fn clone_of(m: &Value) -> Option<(String, String)> {
    let c = m.get("clone_of").filter(|c| !c.is_null())?;
    Some((
        c.get("vdi")?.as_str()?.to_owned(),
        c.get("snapshot")?.as_str()?.to_owned(),
    ))
}

/// The size and the CRC32s of a listed snapshot.
fn crcs_of(m: &Value, name: &str) -> Option<(u64, Vec<u32>)> {
    let snap = m
        .get("snapshots")?
        .as_array()?
        .iter()
        .find(|s| s.get("name").and_then(Value::as_str) == Some(name))?;
    let crcs = snap
        .get("crc32")?
        .as_array()?
        .iter()
        .map(|v| u32::from_str_radix(v.as_str()?, 16).ok())
        .collect::<Option<Vec<u32>>>()?;
    Some((snap.get("size")?.as_u64()?, crcs))
}

impl Target for Dir {
    fn show(&self, name: &str) -> String {
        s(&self.root.join(name))
    }

    fn state(&mut self, family: &Family) -> Result<TargetState, CliError> {
        let dir = self.vdi_dir(&family.name)?;
        let m = match self.manifest(&family.name)? {
            Some(m) => m,
            None if !dir.exists() => return Ok(TargetState::default()),
            None => {
                // A directory with anything but what a killed first run
                // leaves (temporary files) is not ours.
                let foreign = fs::read_dir(&dir)
                    .map_err(|e| error::file(&s(&dir), "read", &e))?
                    .filter_map(Result::ok)
                    .any(|e| !e.file_name().to_string_lossy().ends_with(".tmp"));
                return Ok(TargetState {
                    exists: foreign,
                    ours: !foreign,
                    ..TargetState::default()
                });
            }
        };
        let ours = m.get("vdi").and_then(Value::as_str) == Some(family.name.as_str());
        let snapshots = listed(&m)
            .into_iter()
            .filter(|(_, file, _)| dir.join(file).is_file())
            .map(|(n, _, _)| n)
            .collect();
        Ok(TargetState {
            exists: true,
            ours,
            cloned: m.get("clone_of").is_some_and(|c| !c.is_null()),
            snapshots,
        })
    }

    fn has_snapshot(&mut self, name: &str, snap: &str) -> Result<bool, CliError> {
        Ok(self
            .manifest(name)?
            .is_some_and(|m| listed(&m).iter().any(|(n, _, _)| n == snap)))
    }

    fn create(&mut self, family: &Family) -> Result<(), CliError> {
        self.fresh(family, Value::Null)
    }

    fn clone_of(&mut self, family: &Family, parent: &str, snap: &str) -> Result<(), CliError> {
        self.fresh(family, json!({ "vdi": parent, "snapshot": snap }))
    }

    fn ship(
        &mut self,
        family: &Family,
        _from: From<'_>,
        to: &Snapshot,
        diff: &mut dyn FnMut(&mut dyn Write) -> Result<(), CliError>,
    ) -> Result<u64, CliError> {
        let dir = self.vdi_dir(&family.name)?;
        let n = self.manifest(&family.name)?.map_or(0, |m| listed(&m).len()) + 1;
        stream_atomic(&dir.join(diff_file(n, &to.name)), diff)
    }

    fn changed_since(&mut self, _: &Family, _: From<'_>) -> Result<Vec<(u64, u64)>, CliError> {
        // Each diff is a file of its own, whole or not there.
        Ok(Vec::new())
    }

    fn shipped(
        &mut self,
        family: &Family,
        from: From<'_>,
        to: &Snapshot,
        crcs: &[u32],
    ) -> Result<(), CliError> {
        let from = match from {
            From::Nothing => Value::Null,
            From::Snapshot(s) => json!(s),
            From::Origin => json!("(clone origin)"),
        };
        let crcs: Vec<String> = crcs.iter().map(|c| format!("{c:08x}")).collect();
        self.edit(&family.name, |m| {
            let n = listed(m).len() + 1;
            let entry = json!({
                "name": to.name,
                "tag": to.tag,
                "id": to.snap_id,
                "vid": format!("{:x}", to.vid),
                "created": to.ctime,
                "created_utc": date::iso(to.ctime),
                "size": to.size,
                "diff": diff_file(n, &to.name),
                "from": from,
                "vm_state": Value::Null,
                "crc32": crcs,
            });
            m["size"] = json!(to.size);
            if let Some(a) = m.get_mut("snapshots").and_then(Value::as_array_mut) {
                a.push(entry);
            }
        })
    }

    fn read_back(&mut self, family: &Family, to: &Snapshot) -> Result<Vec<u32>, CliError> {
        let res = self.read_back_chain(family, to);
        if res.is_err() {
            self.drop_scratch();
        }
        res
    }

    fn kept_crcs(&mut self, vdi: &str, snap: &str) -> Option<(u64, Vec<u32>)> {
        let m = self.manifest(vdi).ok()??;
        crcs_of(&m, snap)
    }

    fn forget(&mut self, _family: &Family, _snap: &str) -> Result<(), CliError> {
        Ok(())
    }

    fn attributes(&mut self, family: &Family, attrs: &[Attribute]) -> Result<(), CliError> {
        let list: Vec<Value> = attrs
            .iter()
            .map(|a| {
                let snap = family
                    .snapshots
                    .iter()
                    .find(|s| s.snap_id == a.snap_id && a.snap_id != 0)
                    .map(|s| s.name.clone());
                json!({
                    "key": meta_value(&a.key),
                    "value": meta_value(&a.value),
                    "snapshot": snap,
                    "snapshot_id": a.snap_id,
                })
            })
            .collect();
        self.edit(&family.name, |m| m["attributes"] = Value::Array(list))
    }

    fn vmstate(
        &mut self,
        family: &Family,
        snap: &Snapshot,
        write: &mut dyn FnMut(&mut dyn Write) -> Result<(), CliError>,
    ) -> Result<(), CliError> {
        let dir = self.vdi_dir(&family.name)?;
        let file = format!("{}.vmstate", snap.name);
        stream_atomic(&dir.join(&file), write)?;
        self.edit(&family.name, |m| {
            if let Some(a) = m.get_mut("snapshots").and_then(Value::as_array_mut) {
                for e in a.iter_mut() {
                    if e.get("name").and_then(Value::as_str) == Some(snap.name.as_str()) {
                        e["vm_state"] = json!({
                            "file": file,
                            "size": snap.vm_state_size,
                            "vm_clock_nsec": snap.vm_clock_nsec,
                        });
                    }
                }
            }
        })
    }

    fn has_vmstate(&mut self, family: &Family, snap: &Snapshot) -> Result<bool, CliError> {
        let Some(m) = self.manifest(&family.name)? else {
            return Ok(false);
        };
        Ok(m.get("snapshots")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|e| {
                e.get("name").and_then(Value::as_str) == Some(snap.name.as_str())
                    && !e.get("vm_state").is_none_or(Value::is_null)
            }))
    }
}

impl Dir {
    fn drop_scratch(&mut self) {
        if let Some(sc) = self.scratch.take() {
            let _ = fs::remove_file(&sc.path);
        }
    }

    /// The CRC32s of `to` as the set holds it: its chain of diffs applied
    /// to a scratch image (the diffs not applied yet, when the last read
    /// back was of this VDI and an earlier snapshot), its objects hashed.
    fn read_back_chain(&mut self, family: &Family, to: &Snapshot) -> Result<Vec<u32>, CliError> {
        let name = image_name(&family.name)?.to_owned();
        let m = self
            .manifest(&name)?
            .ok_or_else(|| CliError::msg(format!("{}: no manifest", self.show(&name))))?;
        let list = listed(&m);
        let k = list
            .iter()
            .position(|(n, _, _)| n == &to.name)
            .ok_or_else(|| {
                CliError::msg(format!(
                    "{}: no snapshot {} in the manifest",
                    self.show(&name),
                    to.name
                ))
            })?;
        let reuse = self
            .scratch
            .as_ref()
            .is_some_and(|sc| sc.vdi == name && sc.applied <= k + 1);
        if !reuse {
            self.drop_scratch();
            let path = self.root.join(format!(".verify-{name}.raw"));
            let mut file = File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .map_err(|e| error::file(&s(&path), "write", &e))?;
            if let Some((parent, psnap)) = clone_of(&m) {
                self.materialize(&parent, &psnap, &mut file)?;
            }
            self.scratch = Some(Scratch {
                vdi: name.clone(),
                applied: 0,
                path,
                file,
            });
        }
        let dir = self.vdi_dir(&name)?;
        let sc = self
            .scratch
            .as_mut()
            .ok_or_else(|| CliError::msg("internal error: no scratch image"))?;
        for (_, file, _) in &list[sc.applied..=k] {
            apply_file(&dir.join(file), &mut sc.file)?;
        }
        sc.applied = k + 1;
        crc::of_file(&mut sc.file, family.object_size, to.size)
            .map_err(|e| error::file(&s(&sc.path), "read", &e))
    }

    /// Apply `name`'s chain of diffs up to snapshot `snap` into `f` (its
    /// clone parent's first, for a clone).
    fn materialize(&self, name: &str, snap: &str, f: &mut File) -> Result<(), CliError> {
        let m = self
            .manifest(name)?
            .ok_or_else(|| CliError::msg(format!("{}: no manifest", self.show(name))))?;
        if let Some((parent, psnap)) = clone_of(&m) {
            self.materialize(&parent, &psnap, f)?;
        }
        let dir = self.vdi_dir(name)?;
        for (n, file, _) in listed(&m) {
            apply_file(&dir.join(&file), f)?;
            if n == snap {
                return Ok(());
            }
        }
        Err(CliError::msg(format!(
            "{}: no snapshot {snap} in the manifest",
            self.show(name)
        )))
    }
}

/// Apply the `rbd diff v1` stream in `path` to the file `f`: writes,
/// zeroed ranges, and its size; read a piece at a time.
pub fn apply_file(path: &Path, f: &mut File) -> Result<(), CliError> {
    use sheepdog_core::rbd_diff::{Decoder, Item, Record};
    use sheepdog_core::stream::StreamDecoder;
    use std::io::Read;

    let shown = s(path);
    let mut input = File::open(path).map_err(|e| error::file(&shown, "read", &e))?;
    let werr = |e: std::io::Error| error::file(&shown, "apply", &e);
    let mut d = Decoder::new();
    let mut buf = vec![0u8; 1 << 20];
    let (mut start, mut end) = (0usize, 0usize);
    let mut eof = false;
    loop {
        let (used, item) = d
            .next(&buf[start..end])
            .map_err(|e| CliError::msg(format!("{shown}: {e}")))?;
        start += used;
        match item {
            Some(Item::Record(Record::Size(size))) => f.set_len(size).map_err(werr)?,
            Some(Item::Record(Record::Zero { offset, len })) => {
                zero_at(f, offset, len).map_err(werr)?
            }
            Some(Item::Data { offset, bytes }) => write_at(f, bytes, offset).map_err(werr)?,
            Some(Item::Record(Record::End)) => return Ok(()),
            Some(_) => {}
            None if used == 0 => {
                if eof {
                    return Err(CliError::msg(format!(
                        "{shown}: {}",
                        d.finish()
                            .err()
                            .map_or_else(|| "the diff is cut short".to_owned(), |e| e.to_string())
                    )));
                }
                // Keep what is left, read more behind it.
                buf.copy_within(start..end, 0);
                end -= start;
                start = 0;
                let n = input
                    .read(&mut buf[end..])
                    .map_err(|e| error::file(&shown, "read", &e))?;
                eof = n == 0;
                end += n;
            }
            None => {}
        }
    }
}

/// Zeros over `len` bytes of `f` at `offset`.
fn zero_at(f: &mut File, offset: u64, len: u64) -> std::io::Result<()> {
    let zeros = vec![0u8; len.min(1 << 20) as usize];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(zeros.len() as u64) as usize;
        write_at(f, &zeros[..n], offset + done)?;
        done += n as u64;
    }
    Ok(())
}

fn write_at(f: &mut File, b: &[u8], at: u64) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom};
    f.seek(SeekFrom::Start(at))?;
    f.write_all(b)
}
