//! `--to rbd:POOL`: a Ceph pool through the `rbd` command the user has,
//! with its own configuration (`CEPH_CONF`, and `--rbd-arg` passed on for
//! `--id`, `--keyring`, ...). One image per VDI, of the same name; each
//! snapshot an rbd snapshot made by `rbd import-diff` of the diff streamed
//! into it (it makes the snapshot only once every write is done); a clone
//! an rbd clone of its parent's snapshot; attributes image-meta; VM states
//! images of their own. The image's `sheepdog.vdi` meta marks it as the
//! VDI's migration: an image without it is never written.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use super::crc;
use super::plan::TargetState;
use super::source::{Family, Snapshot};
use super::target::{image_name, meta_value, From, Target};
use crate::cluster::attrs::Attribute;
use crate::error::CliError;

/// The mark a migrated image carries: its VDI's name.
const MARK: &str = "sheepdog.vdi";
/// The image-meta key of a snapshot's VM state, before the snapshot's
/// name: its value names the image that holds it, its size and VM clock.
const VMSTATE_KEY: &str = "sheepdog.vmstate.";

/// A pool, and what every `rbd` command takes.
#[derive(Debug)]
pub struct Rbd {
    pool: String,
    args: Vec<String>,
    /// Snapshot removals under way (each takes a monitor commit, about a
    /// second): waited for by [`Target::settle`].
    removing: Vec<(String, Child)>,
}

impl Clone for Rbd {
    fn clone(&self) -> Rbd {
        Rbd {
            pool: self.pool.clone(),
            args: self.args.clone(),
            removing: Vec::new(),
        }
    }
}

/// Bytes going into a writer, counted.
struct Counting<'a> {
    inner: &'a mut dyn Write,
    n: u64,
}

impl Write for Counting<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(b)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl Rbd {
    /// The pool `pool`, every `rbd` command given `args` first.
    pub fn new(pool: &str, args: &[String]) -> Result<Rbd, CliError> {
        if pool.is_empty() || pool.contains(['/', '@']) {
            return Err(CliError::msg(format!(
                "bad --to rbd:{pool}: name a pool (rbd:POOL)"
            )));
        }
        Ok(Rbd {
            pool: pool.to_owned(),
            args: args.to_vec(),
            removing: Vec::new(),
        })
    }

    fn spec(&self, image: &str) -> String {
        format!("{}/{image}", self.pool)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("rbd");
        c.args(&self.args).args(args);
        die_with_parent(&mut c);
        c
    }

    /// Run `rbd ARGS` to its end.
    fn output(&self, args: &[&str]) -> Result<std::process::Output, CliError> {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| CliError::msg(format!("cannot run rbd: {e} (is ceph-common installed?)")))
    }

    /// Run `rbd ARGS` to its end: its stdout, or an error naming it.
    fn run(&self, args: &[&str]) -> Result<String, CliError> {
        let o = self.output(args)?;
        if !o.status.success() {
            return Err(rbd_error(args, &o.stderr));
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// Like [`Rbd::run`]; `None` when the image or snapshot is not there.
    fn run_maybe(&self, args: &[&str]) -> Result<Option<String>, CliError> {
        let o = self.output(args)?;
        if o.status.success() {
            return Ok(Some(String::from_utf8_lossy(&o.stdout).into_owned()));
        }
        if missing(&o.stderr) {
            return Ok(None);
        }
        Err(rbd_error(args, &o.stderr))
    }

    fn json(&self, args: &[&str]) -> Result<Option<Value>, CliError> {
        let Some(out) = self.run_maybe(args)? else {
            return Ok(None);
        };
        // `image-meta list` of an image without any says nothing at all.
        if out.trim().is_empty() {
            return Ok(Some(Value::Null));
        }
        serde_json::from_str(&out)
            .map(Some)
            .map_err(|e| CliError::msg(format!("rbd {}: output is not JSON ({e})", args.join(" "))))
    }

    /// The snapshots of `image`, oldest first, and whether each is
    /// protected; `None` when there is no such image.
    fn snapshots(&self, image: &str) -> Result<Option<Vec<(String, bool)>>, CliError> {
        let spec = self.spec(image);
        let Some(v) = self.json(&["snap", "ls", "--format", "json", &spec])? else {
            return Ok(None);
        };
        let mut snaps: Vec<(u64, String, bool)> = v
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| {
                        let id = s.get("id")?.as_u64()?;
                        let name = s.get("name")?.as_str()?.to_owned();
                        let protected = s.get("protected").and_then(Value::as_str) == Some("true");
                        Some((id, name, protected))
                    })
                    .collect()
            })
            .unwrap_or_default();
        snaps.sort();
        Ok(Some(snaps.into_iter().map(|(_, n, p)| (n, p)).collect()))
    }

    /// Every image-meta key of `image` with its value.
    fn meta_list(&self, image: &str) -> Result<Vec<(String, String)>, CliError> {
        let spec = self.spec(image);
        let v = self.json(&["image-meta", "list", "--format", "json", &spec])?;
        Ok(v.as_ref()
            .and_then(Value::as_object)
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default())
    }

    fn meta_get(&self, image: &str, key: &str) -> Result<Option<String>, CliError> {
        Ok(self
            .meta_list(image)?
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v))
    }

    fn meta_remove(&self, image: &str, key: &str) -> Result<(), CliError> {
        self.run(&["image-meta", "remove", &self.spec(image), key])
            .map(|_| ())
    }

    fn meta_set(&self, image: &str, key: &str, value: &str) -> Result<(), CliError> {
        self.run(&["image-meta", "set", &self.spec(image), key, value])
            .map(|_| ())
    }

    /// Start `rbd ARGS` with its stdin a pipe to write into.
    fn spawn_in(&self, args: &[&str]) -> Result<Child, CliError> {
        self.command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| CliError::msg(format!("cannot run rbd: {e} (is ceph-common installed?)")))
    }

    /// Feed `write` into `rbd ARGS` and wait for it; the bytes fed.
    fn feed(
        &self,
        args: &[&str],
        write: &mut dyn FnMut(&mut dyn Write) -> Result<(), CliError>,
    ) -> Result<u64, CliError> {
        let mut child = self.spawn_in(args)?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| CliError::msg("rbd: no stdin"))?;
        let mut counted = Counting {
            inner: &mut stdin,
            n: 0,
        };
        let wrote = write(&mut counted).and_then(|()| {
            counted
                .flush()
                .map_err(|e| CliError::msg(format!("rbd {}: {e}", args.join(" "))))
        });
        let n = counted.n;
        drop(stdin);
        let mut err = Vec::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_end(&mut err);
        }
        let status = child
            .wait()
            .map_err(|e| CliError::msg(format!("rbd: {e}")))?;
        // rbd's own error says most (a broken pipe on our side follows it).
        if !status.success() {
            return Err(rbd_error(args, &err));
        }
        wrote?;
        Ok(n)
    }

    fn vmstate_image(name: &str, snap: &str) -> String {
        format!("{name}.vmstate.{snap}")
    }
}

/// An `rbd` this process started dies with it: one left running after a
/// `kill -9` would go on writing, and make its snapshot, while the next
/// run plans from what it sees. (Linux ties this to the thread that
/// starts the child, which here always waits for it.)
#[cfg(target_os = "linux")]
fn die_with_parent(c: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches
    // nothing of the parent's memory; it runs in the child before exec.
    let parent = std::process::id();
    unsafe {
        c.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            // Gone between the fork and the prctl: go too.
            if libc::getppid() as u32 != parent {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_: &mut Command) {}

/// Whether rbd's error says the image or snapshot is not there.
fn missing(stderr: &[u8]) -> bool {
    let err = String::from_utf8_lossy(stderr);
    err.contains("No such file") || err.contains("not found")
}

/// An error of `rbd ARGS`: its last line that says something.
fn rbd_error(args: &[&str], stderr: &[u8]) -> CliError {
    let text = String::from_utf8_lossy(stderr);
    let why = text
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.contains("% complete"))
        .unwrap_or("failed");
    CliError::msg(format!("rbd {}: {why}", args.join(" ")))
}

impl Target for Rbd {
    fn show(&self, name: &str) -> String {
        format!("rbd:{}", self.spec(name))
    }

    fn state(&mut self, family: &Family) -> Result<TargetState, CliError> {
        let name = image_name(&family.name)?;
        let Some(snaps) = self.snapshots(name)? else {
            return Ok(TargetState::default());
        };
        let mark = self.meta_get(name, MARK)?;
        // Whether it is a clone matters only when no snapshot of the
        // VDI's is there to start from.
        let known = snaps
            .iter()
            .any(|(n, _)| family.snapshots.iter().any(|s| &s.name == n));
        let cloned = !known && {
            let info = self.json(&["info", "--format", "json", &self.spec(name)])?;
            info.as_ref().and_then(|v| v.get("parent")).is_some()
        };
        Ok(TargetState {
            exists: true,
            ours: mark.as_deref() == Some(family.name.as_str()),
            cloned,
            snapshots: snaps.into_iter().map(|(n, _)| n).collect(),
        })
    }

    fn has_snapshot(&mut self, name: &str, snap: &str) -> Result<bool, CliError> {
        let name = image_name(name)?;
        Ok(self
            .snapshots(name)?
            .is_some_and(|s| s.iter().any(|(n, _)| n == snap)))
    }

    fn create(&mut self, family: &Family) -> Result<(), CliError> {
        let name = image_name(&family.name)?;
        let first = family.snapshots.first().map_or(family.size(), |s| s.size);
        let mib = first.div_ceil(1 << 20).max(1);
        let size = format!("{mib}M");
        let spec = self.spec(name);
        let mut args = vec!["create", "--size", &size];
        // The VDI's object size where rbd has it (4 KiB to 32 MiB).
        let os = family.object_size.to_string();
        if family.object_size <= 32 << 20 {
            args.extend(["--object-size", &os]);
        }
        args.push(&spec);
        self.run(&args)?;
        self.meta_set(name, MARK, &family.name)
    }

    fn clone_of(&mut self, family: &Family, parent: &str, snap: &str) -> Result<(), CliError> {
        let name = image_name(&family.name)?;
        let parent = image_name(parent)?;
        let protected = self
            .snapshots(parent)?
            .and_then(|s| s.into_iter().find(|(n, _)| n == snap))
            .is_some_and(|(_, p)| p);
        let at = format!("{}@{snap}", self.spec(parent));
        if !protected {
            self.run(&["snap", "protect", &at])?;
        }
        self.run(&["clone", &at, &self.spec(name)])?;
        // rbd clone copies the parent's image-meta: none of it is the
        // clone's (its attributes come after).
        for (k, _) in self.meta_list(name)? {
            self.meta_remove(name, &k)?;
        }
        self.meta_set(name, MARK, &family.name)
    }

    fn ship(
        &mut self,
        family: &Family,
        _from: From<'_>,
        _to: &Snapshot,
        diff: &mut dyn FnMut(&mut dyn Write) -> Result<(), CliError>,
    ) -> Result<u64, CliError> {
        let spec = self.spec(image_name(&family.name)?);
        self.feed(&["import-diff", "--no-progress", "-", &spec], diff)
    }

    fn changed_since(
        &mut self,
        family: &Family,
        base: From<'_>,
    ) -> Result<Vec<(u64, u64)>, CliError> {
        let spec = self.spec(image_name(&family.name)?);
        // Without a snapshot to start from, everything the image holds (a
        // clone's parent's too).
        let mut args = vec!["diff", "--format", "json"];
        if let From::Snapshot(s) = base {
            args.extend(["--from-snap", s]);
        }
        args.push(&spec);
        let v = self.json(&args)?.unwrap_or(Value::Null);
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| Some((e.get("offset")?.as_u64()?, e.get("length")?.as_u64()?)))
            .collect())
    }

    fn shipped(
        &mut self,
        _: &Family,
        _: From<'_>,
        _: &Snapshot,
        _: &[u32],
    ) -> Result<(), CliError> {
        // import-diff made the snapshot after its last write.
        Ok(())
    }

    fn read_back(&mut self, family: &Family, to: &Snapshot) -> Result<Vec<u32>, CliError> {
        let at = format!("{}@{}", self.spec(image_name(&family.name)?), to.name);
        let args = ["export", "--no-progress", &at, "-"];
        let mut child = self
            .command(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| CliError::msg(format!("cannot run rbd: {e}")))?;
        let mut out = child
            .stdout
            .take()
            .ok_or_else(|| CliError::msg("rbd: no stdout"))?;
        let crcs = crc::of_stream(&mut out, family.object_size, to.size);
        drop(out);
        let mut err = Vec::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_end(&mut err);
        }
        let _ = child.kill();
        let status = child.wait();
        match crcs {
            Ok(c) => Ok(c),
            Err(e) if status.is_ok_and(|s| !s.success()) => {
                let _ = e;
                Err(rbd_error(&args, &err))
            }
            Err(e) => Err(CliError::msg(format!("rbd export {at}: {e}"))),
        }
    }

    fn kept_crcs(&mut self, _vdi: &str, _snap: &str) -> Option<(u64, Vec<u32>)> {
        None
    }

    fn forget(&mut self, family: &Family, snap: &str) -> Result<(), CliError> {
        let at = format!("{}@{snap}", self.spec(image_name(&family.name)?));
        let child = self
            .command(&["snap", "rm", "--no-progress", &at])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| CliError::msg(format!("cannot run rbd: {e}")))?;
        self.removing.push((at, child));
        Ok(())
    }

    fn settle(&mut self) -> Result<(), CliError> {
        let mut first = None;
        for (at, child) in self.removing.drain(..) {
            let out = child
                .wait_with_output()
                .map_err(|e| CliError::msg(format!("rbd snap rm {at}: {e}")));
            let failed = match out {
                Ok(o) if o.status.success() => None,
                // Gone already: what a forget wants.
                Ok(o) if missing(&o.stderr) => None,
                Ok(o) => Some(rbd_error(&["snap", "rm", &at], &o.stderr)),
                Err(e) => Some(e),
            };
            first = first.or(failed);
        }
        first.map_or(Ok(()), Err)
    }

    fn attributes(&mut self, family: &Family, attrs: &[Attribute]) -> Result<(), CliError> {
        let name = image_name(&family.name)?;
        let mut want = Vec::new();
        for a in attrs {
            let key = String::from_utf8_lossy(&a.key);
            let key = match family
                .snapshots
                .iter()
                .find(|s| s.snap_id == a.snap_id && a.snap_id != 0)
            {
                Some(s) => format!("sheepdog.snapshot.{}.{key}", s.name),
                None if a.snap_id != 0 => format!("sheepdog.snapshot.{}.{key}", a.snap_id),
                None => key.into_owned(),
            };
            want.push((key, meta_value(&a.value)));
        }
        // Attributes removed on the source since the last run go; the
        // mark and the VM states stay.
        let have = self.meta_list(name)?;
        for (k, _) in &have {
            let ours = k == MARK || k.starts_with(VMSTATE_KEY);
            if !ours && !want.iter().any(|(w, _)| w == k) {
                self.meta_remove(name, k)?;
            }
        }
        for (k, v) in &want {
            if !have.iter().any(|(hk, hv)| hk == k && hv == v) {
                self.meta_set(name, k, v)?;
            }
        }
        Ok(())
    }

    fn vmstate(
        &mut self,
        family: &Family,
        snap: &Snapshot,
        write: &mut dyn FnMut(&mut dyn Write) -> Result<(), CliError>,
    ) -> Result<(), CliError> {
        let name = image_name(&family.name)?;
        let image = Rbd::vmstate_image(name, &snap.name);
        // What a killed run left is made again.
        self.run_maybe(&["rm", "--no-progress", &self.spec(&image)])?;
        self.feed(&["import", "--no-progress", "-", &self.spec(&image)], write)?;
        let key = format!("{VMSTATE_KEY}{}", snap.name);
        let value = format!("{image} {} {}", snap.vm_state_size, snap.vm_clock_nsec);
        self.meta_set(name, &key, &value)
    }

    fn has_vmstate(&mut self, family: &Family, snap: &Snapshot) -> Result<bool, CliError> {
        let name = image_name(&family.name)?;
        Ok(self
            .meta_get(name, &format!("{VMSTATE_KEY}{}", snap.name))?
            .is_some())
    }
}
