#!/usr/bin/env python3
"""Incremental diffs, measured.

On a volume of --size-mib MiB of random data (1 GiB by default) with 2% of
its objects changed between two snapshots s1 and s2 (a 4 KiB write in each
changed object, made with import-diff):

* `export-diff VDI@s2 --from s1` (and with `--exact`): its wall time, and
  the READ_OBJ requests it made (from its own count); against `dog vdi backup -F s1 -s s2` of the
  same pair when dog is on the PATH (same cluster). The dog stream is then
  applied with import-diff to a clone of s1 and compared with s2.
* `import-diff` of the full diff of s2 into a fresh VDI against `import` of
  the same image into a fresh VDI: the throughput ratio.
* Peak RSS (/usr/bin/time) of export-diff, import-diff, import and export
  on a --sparse-gib GiB volume (4 by default) with 1 MiB of data every
  64 MiB.

Each figure is the median of --runs runs; every result is checked (diffs
applied are compared with `compare`).

    bench/diff --address 127.0.0.1:7000   # a real cluster
    bench/diff --smoke                    # the bundled reference server
"""

import argparse
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


def peak_rss_mib(cmd):
    r = run(["/usr/bin/time", "-f", "RSS %M", *cmd])
    m = re.search(r"RSS (\d+)", r.stderr.decode())
    return int(m.group(1)) / 1024


class Cluster:
    def __init__(self, addr):
        self.addr = addr

    def tool(self, *args):
        return [TOOL, "-a", self.addr, *args]

    def ok(self, *args, **kw):
        return run(self.tool(*args), **kw)

    def delete(self, vdi):
        # Snapshots first (newest last does not matter to sheep), then VDI.
        lst = json.loads(run(self.tool("list", "--json")).stdout)
        for row in lst:
            if row.get("name") == vdi and row.get("snapshot"):
                self.ok("delete", f"{vdi}@{row.get('snapshot_id')}")
        subprocess.run(self.tool("delete", vdi), capture_output=True)


def diff_of_writes(path, to, writes):
    """An rbd diff v1 stream that writes `writes` [(offset, bytes)] and
    names TO."""
    with open(path, "wb") as f:
        f.write(b"rbd diff v1\n")
        f.write(b"t" + struct.pack("<I", len(to)) + to.encode())
        for off, data in writes:
            f.write(b"w" + struct.pack("<QQ", off, len(data)) + data)
        f.write(b"e")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--address", help="a cluster's gateway HOST:PORT")
    ap.add_argument("--smoke", action="store_true", help="small, once, against the reference server")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--sparse-gib", type=int, default=4)
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="diff-bench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    ref = None
    try:
        if a.smoke or not a.address:
            a.runs, a.size_mib, a.sparse_gib = 1, 64, 1
            store = os.path.join(work, "store")
            os.mkdir(store)
            ref = subprocess.Popen([REF, "--listen", "127.0.0.1:0", "--dir", store], stdout=subprocess.PIPE, text=True)
            a.address = ref.stdout.readline().split()[-1]
        results = bench(a, Cluster(a.address), work)
        print(json.dumps(results, indent=2))
        if a.json:
            with open(a.json, "w") as f:
                json.dump(results, f, indent=2)
    finally:
        if ref:
            ref.kill()
        shutil.rmtree(work, ignore_errors=True)


def bench(a, c, work):
    res = {}
    size = a.size_mib * MIB
    objects = size // OBJ
    img = os.path.join(work, "img.raw")
    r = random.Random(7)
    with open(img, "wb") as f:
        for _ in range(size // MIB):
            f.write(r.randbytes(MIB))
    vdi = "bench-diff"
    c.delete(vdi)
    c.ok("import", img, vdi)
    c.ok("snapshot", "create", vdi, "--tag", "s1")
    changed = max(1, objects * 2 // 100)
    picks = sorted(r.sample(range(objects), changed))
    change = os.path.join(work, "change.diff")
    diff_of_writes(change, "s2", [(i * OBJ + 8192, r.randbytes(4096)) for i in picks])
    c.ok("import-diff", change, vdi)
    res["objects"] = objects
    res["changed_objects"] = changed

    # export-diff of s2 from s1, against dog vdi backup.
    out = os.path.join(work, "inc.diff")
    times = []
    for _ in range(a.runs):
        t, rr = timed(c.tool("export-diff", f"{vdi}@s2", "--from", "s1", out))
        times.append(t)
    m = re.search(r"(\d+) objects? read \((\d+) read requests", rr.stderr.decode())
    res["export_diff_s"] = statistics.median(times)
    res["export_diff_objects_read"] = int(m.group(1))
    res["export_diff_read_requests"] = int(m.group(2))
    res["export_diff_bytes"] = os.path.getsize(out)
    exact = os.path.join(work, "exact.diff")
    times = []
    for _ in range(a.runs):
        t, rr = timed(c.tool("export-diff", f"{vdi}@s2", "--from", "s1", "--exact", exact))
        times.append(t)
    m = re.search(r"\((\d+) read requests", rr.stderr.decode())
    res["export_diff_exact_s"] = statistics.median(times)
    res["export_diff_exact_read_requests"] = int(m.group(1))
    res["export_diff_exact_bytes"] = os.path.getsize(exact)
    if shutil.which("dog") and not a.smoke:
        host, port = c.addr.rsplit(":", 1)
        bak = os.path.join(work, "dog.bak")
        times = []
        for _ in range(a.runs):
            with open(bak, "wb") as f:
                t, _ = timed(["dog", "vdi", "backup", "-a", host, "-p", port, "-F", "s1", "-s", "s2", vdi], stdout=f)
            times.append(t)
        res["dog_backup_s"] = statistics.median(times)
        res["dog_backup_bytes"] = os.path.getsize(bak)
        res["speedup_vs_dog_backup"] = res["dog_backup_s"] / res["export_diff_s"]
        # dog's stream applied to a clone of s1 is s2.
        c.delete("bench-dogcopy")
        c.ok("clone", f"{vdi}@s1", "bench-dogcopy")
        c.ok("import-diff", bak, "bench-dogcopy")
        c.ok("compare", "bench-dogcopy", f"{vdi}@s2")
        c.delete("bench-dogcopy")
        res["dog_stream_applied_equals_s2"] = True
    # Our diff applied to a clone of s1 is s2, too.
    c.delete("bench-copy")
    c.ok("clone", f"{vdi}@s1", "bench-copy")
    c.ok("import-diff", "--force", out, "bench-copy")
    c.ok("compare", "bench-copy", f"{vdi}@s2")
    c.delete("bench-copy")
    c.ok("clone", f"{vdi}@s1", "bench-copy")
    c.ok("import-diff", "--force", exact, "bench-copy")
    c.ok("compare", "bench-copy", f"{vdi}@s2")
    c.delete("bench-copy")

    # import-diff of everything in s2 against import of the same image.
    full = os.path.join(work, "full.diff")
    c.ok("export-diff", f"{vdi}@s2", full)
    want = os.path.join(work, "s2.raw")
    c.ok("export", f"{vdi}@s2", want)
    imp, impd = [], []
    for _ in range(a.runs):
        c.delete("bench-in")
        subprocess.run(["sync"])
        imp.append(timed(c.tool("import", want, "bench-in"))[0])
        c.delete("bench-in")
        c.ok("create", "bench-in", str(size))
        subprocess.run(["sync"])
        impd.append(timed(c.tool("import-diff", full, "bench-in"))[0])
        c.ok("compare", "bench-in", want)
    c.delete("bench-in")
    res["import_mib_s"] = a.size_mib / statistics.median(imp)
    res["import_diff_mib_s"] = a.size_mib / statistics.median(impd)
    res["import_diff_vs_import"] = res["import_diff_mib_s"] / res["import_mib_s"]
    c.delete(vdi)

    # Peak RSS on a large sparse volume.
    sp = os.path.join(work, "sparse.raw")
    with open(sp, "wb") as f:
        f.truncate(a.sparse_gib << 30)
        for i in range(0, (a.sparse_gib << 30) // MIB, 64):
            f.seek(i * MIB)
            f.write(r.randbytes(MIB))
    svdi = "bench-sparse"
    c.delete(svdi)
    c.delete("bench-sparse-in")
    rss = {}
    rss["import"] = peak_rss_mib(c.tool("-q", "import", sp, svdi))
    c.ok("snapshot", "create", svdi, "--tag", "a")
    sdiff = os.path.join(work, "sparse.diff")
    rss["export-diff"] = peak_rss_mib(c.tool("-q", "export-diff", f"{svdi}@a", sdiff))
    rss["export"] = peak_rss_mib(c.tool("-q", "export", f"{svdi}@a", os.path.join(work, "sparse.out")))
    c.ok("create", "bench-sparse-in", str(a.sparse_gib << 30))
    rss["import-diff"] = peak_rss_mib(c.tool("-q", "import-diff", sdiff, "bench-sparse-in"))
    c.ok("compare", "bench-sparse-in@a", f"{svdi}@a")
    c.delete("bench-sparse-in")
    c.delete(svdi)
    res["peak_rss_mib"] = rss
    return res


if __name__ == "__main__":
    main()
