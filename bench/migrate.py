#!/usr/bin/env python3
"""migrate into Ceph, measured.

A VDI of --size-mib MiB of random data (1 GiB by default) with three
snapshots s1, s2, s3 and 2% of its objects changed between each (and after
s3, in the working VDI), a 4 KiB write in each changed object:

* `migrate VDI --to rbd:POOL`: wall time, bytes shipped (its --json
  summary), peak RSS (/usr/bin/time; the rbd processes it feeds are
  apart), against the same by hand with full copies: `sheep-tool export
  VDI@SNAP - | rbd import - IMAGE` for s1, s2, s3 and the working VDI.
* After 2% more changes, a rerun: time and bytes, against one more full
  copy by hand (the median of --runs, each after 2% more).
* `--jobs 4` over 8 VDIs of size/8 against `--jobs 1` over 8 others.

Every migrated snapshot is checked: `rbd export IMAGE@SNAP` is compared
(SHA-256) with `sheep-tool export VDI@SNAP`.

    bench/migrate --smoke --ceph-dev                      # reference server, small
    CEPH_CONF=... bench/migrate --address 127.0.0.1:7000  # a real cluster
"""

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "target", "release", "sheep-tool")
REF = os.path.join(ROOT, "target", "release", "sheep-ref")
MIB = 1 << 20
OBJ = 4 * MIB


def run(cmd, **kw):
    kw.setdefault("stdout", subprocess.PIPE)
    r = subprocess.run(cmd, stderr=subprocess.PIPE, **kw)
    if r.returncode != 0:
        err = r.stderr.decode(errors="replace").strip()
        sys.exit(f"error: {' '.join(cmd)} failed ({r.returncode}): {err}")
    return r


def timed(cmd, **kw):
    start = time.monotonic()
    r = run(cmd, **kw)
    return time.monotonic() - start, r


def sha(cmd):
    """SHA-256 of what `cmd` writes to stdout, streamed."""
    h = hashlib.sha256()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    for chunk in iter(lambda: p.stdout.read(MIB), b""):
        h.update(chunk)
    if p.wait() != 0:
        sys.exit(f"error: {' '.join(cmd)} failed")
    return h.hexdigest()


class Setup:
    def __init__(self, addr, pool, prefix):
        self.addr, self.pool, self.prefix = addr, pool, prefix

    def tool(self, *args):
        return [TOOL, "-a", self.addr, *args]

    def ok(self, *args, **kw):
        return run(self.tool(*args), **kw)

    def name(self, n):
        return f"{self.prefix}{n}"


def diff_of_writes(path, writes):
    """An rbd diff v1 stream that writes `writes` [(offset, bytes)]."""
    with open(path, "wb") as f:
        f.write(b"rbd diff v1\n")
        for off, data in writes:
            f.write(b"w" + struct.pack("<QQ", off, len(data)) + data)
        f.write(b"e")


def change(s, vdi, objects, rnd, work):
    """A 4 KiB write in 2% of the objects of `vdi`."""
    picks = sorted(rnd.sample(range(objects), max(1, objects * 2 // 100)))
    path = os.path.join(work, "change.diff")
    diff_of_writes(path, [(i * OBJ + 8192, rnd.randbytes(4096)) for i in picks])
    s.ok("import-diff", "--force", path, vdi)


def make_vdi(s, vdi, size, rnd, work):
    img = os.path.join(work, "img.raw")
    with open(img, "wb") as f:
        for _ in range(size // MIB):
            f.write(rnd.randbytes(MIB))
    s.ok("import", img, vdi)
    os.unlink(img)


def migrate(s, *args):
    """One migrate run: (seconds, its JSON summary, peak RSS MiB)."""
    cmd = ["/usr/bin/time", "-f", "RSS %M", *s.tool("migrate", *args, "--to", f"rbd:{s.pool}", "--json")]
    t, r = timed(cmd)
    rss = int(re.search(r"RSS (\d+)", r.stderr.decode()).group(1)) / 1024
    j = json.loads(r.stdout)
    if j["failed"]:
        sys.exit(f"error: migrate failed: {j}")
    return t, j, rss


def rbd_snaps(s, image):
    v = json.loads(run(["rbd", "snap", "ls", "--format", "json", f"{s.pool}/{image}"]).stdout)
    return [x["name"] for x in sorted(v, key=lambda x: x["id"])]


def check(s, vdi, pairs):
    """rbd's IMAGE@SNAP equals the source's VDI@SRC for each (src, snap)."""
    for src, snap in pairs:
        want = sha(s.tool("export", f"{vdi}@{src}" if src else vdi, "-"))
        got = sha(["rbd", "export", "--no-progress", f"{s.pool}/{vdi}@{snap}", "-"])
        if want != got:
            sys.exit(f"error: {vdi}@{snap} in Ceph differs from the source {src or 'working VDI'}")


def by_hand(s, vdi, src, image):
    """sheep-tool export VDI@SRC - | rbd import - IMAGE: seconds."""
    start = time.monotonic()
    exp = subprocess.Popen(s.tool("export", f"{vdi}@{src}" if src else vdi, "-"), stdout=subprocess.PIPE)
    imp = subprocess.run(["rbd", "import", "--no-progress", "-", f"{s.pool}/{image}"], stdin=exp.stdout, capture_output=True)
    exp.stdout.close()
    if exp.wait() != 0 or imp.returncode != 0:
        sys.exit(f"error: export | rbd import of {vdi}@{src}: {imp.stderr.decode().strip()}")
    return time.monotonic() - start


def rbd_rm(s, image):
    subprocess.run(["rbd", "snap", "purge", "--no-progress", f"{s.pool}/{image}"], capture_output=True)
    subprocess.run(["rbd", "rm", "--no-progress", f"{s.pool}/{image}"], capture_output=True)


def bench(a, s, work):
    res = {}
    rnd = random.Random(11)
    size = a.size_mib * MIB
    objects = size // OBJ
    vm = s.name("vm")
    make_vdi(s, vm, size, rnd, work)
    for snap in ["s1", "s2", "s3"]:
        s.ok("snapshot", "create", vm, "--tag", snap)
        change(s, vm, objects, rnd, work)
    res["size_mib"] = a.size_mib
    res["objects"] = objects
    res["changed_objects_each_time"] = max(1, objects * 2 // 100)

    t, j, rss = migrate(s, vm)
    live = [n for n in rbd_snaps(s, vm) if n.startswith("migrate-")][0]
    check(s, vm, [("s1", "s1"), ("s2", "s2"), ("s3", "s3"), (live, live)])
    res["migrate_s"] = round(t, 2)
    res["migrate_bytes"] = j["bytes"]
    res["migrate_peak_rss_mib"] = round(rss, 1)

    hand = 0.0
    for src in ["s1", "s2", "s3", None]:
        image = s.name(f"hand-{src or 'working'}")
        hand += by_hand(s, vm, src, image)
        rbd_rm(s, image)
    res["by_hand_s"] = round(hand, 2)
    res["by_hand_bytes"] = 4 * size
    res["migrate_speedup_vs_by_hand"] = round(hand / t, 2)

    # Reruns after 2% more changes each: the median of --runs.
    reruns, hands, sent, peak = [], [], [], 0.0
    for i in range(a.runs):
        change(s, vm, objects, rnd, work)
        t, j, rss = migrate(s, vm)
        live = [n for n in rbd_snaps(s, vm) if n.startswith("migrate-")][0]
        check(s, vm, [(live, live)])
        reruns.append(t)
        sent.append(j["bytes"])
        peak = max(peak, rss)
        image = s.name(f"hand-rerun{i}")
        hands.append(by_hand(s, vm, None, image))
        rbd_rm(s, image)
    res["rerun_s"] = round(statistics.median(reruns), 2)
    res["rerun_bytes"] = int(statistics.median(sent))
    res["rerun_peak_rss_mib"] = round(peak, 1)
    res["rerun_by_hand_s"] = round(statistics.median(hands), 2)

    # --jobs: 8 VDIs of size/8, each way.
    each = max(OBJ, size // 8 // OBJ * OBJ)
    for jobs in (1, 4):
        names = [s.name(f"j{jobs}-{i}") for i in range(8)]
        for n in names:
            make_vdi(s, n, each, rnd, work)
        t, j, _ = migrate(s, "--jobs", str(jobs), *names)
        res[f"jobs{jobs}_s"] = round(t, 2)
        res[f"jobs{jobs}_bytes"] = j["bytes"]
    res["jobs4_speedup"] = round(res["jobs1_s"] / res["jobs4_s"], 2)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--address", help="a cluster's gateway HOST:PORT (default: the bundled reference server)")
    ap.add_argument("--smoke", action="store_true", help="small, against the reference server")
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3, help="reruns measured (the median)")
    ap.add_argument("--pool", default="rbd")
    ap.add_argument("--ceph-dev", action="store_true", help="start a one-node Ceph (scripts/ceph-dev) for the run")
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="migrate-bench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    ceph_dir = None
    ref = None
    try:
        if a.ceph_dev:
            ceph_dir = tempfile.mkdtemp(prefix="ceph-dev-")
            run(["bash", os.path.join(ROOT, "scripts", "ceph-dev"), "start", ceph_dir])
            os.environ["CEPH_CONF"] = os.path.join(ceph_dir, "ceph.conf")
        if not os.environ.get("CEPH_CONF"):
            sys.exit("error: no Ceph: set CEPH_CONF, or pass --ceph-dev")
        if a.smoke:
            a.size_mib, a.runs = 64, 1
        if a.smoke or not a.address:
            store = os.path.join(work, "store")
            os.mkdir(store)
            ref = subprocess.Popen([REF, "--listen", "127.0.0.1:0", "--dir", store], stdout=subprocess.PIPE, text=True)
            a.address = ref.stdout.readline().split()[-1]
        prefix = f"bm{os.getpid()}-"
        results = bench(a, Setup(a.address, a.pool, prefix), work)
        print(json.dumps(results, indent=2))
        if a.json:
            with open(a.json, "w") as f:
                json.dump(results, f, indent=2)
    finally:
        if ref:
            ref.kill()
        if ceph_dir:
            subprocess.run(["bash", os.path.join(ROOT, "scripts", "ceph-dev"), "stop", ceph_dir])
            shutil.rmtree(ceph_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
