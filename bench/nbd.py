#!/usr/bin/env python3
"""The NBD server against import and export, on one cluster.

For a 256 MiB dense and a 256 MiB sparse image: `qemu-img convert -n -m 16
-W` and `nbdcopy` into an export and out of it, against `sheep-tool import`
and `export` of the same image (median of --runs runs each, MiB/s of the
image size). Then 4 KiB requests with `qemu-img bench` at depth 1 and 16
(reads and writes; the step spreads them over the volume), and the peak RSS
of the server with 4 clients at depth 64. Every result is also checked:
what went in is read back and compared.

    bench/nbd --address 127.0.0.1:7000      # a real cluster
    bench/nbd --smoke                       # the bundled reference server
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "target", "release", "sheep-tool")
REF = os.path.join(ROOT, "target", "release", "sheep-ref")
MIB = 1 << 20


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


def timed(cmd):
    start = time.monotonic()
    run(cmd)
    return time.monotonic() - start


def images(d, size):
    """A dense image (random, with a 10 MiB zero stretch) and a sparse one
    (1 MiB of data every 16 MiB)."""
    r = random.Random(1)
    dense = os.path.join(d, "dense.raw")
    with open(dense, "wb") as f:
        for i in range(size // MIB):
            f.write(bytes(MIB) if 100 <= i < 110 else r.randbytes(MIB))
    sparse = os.path.join(d, "sparse.raw")
    with open(sparse, "wb") as f:
        f.truncate(size)
        for i in range(0, size // MIB, 16):
            f.seek(i * MIB)
            f.write(r.randbytes(MIB))
    return {"dense": dense, "sparse": sparse}


class Serve:
    """`sheep-tool serve VDI` on a free port."""

    def __init__(self, addr, vdi, extra=()):
        self.p = subprocess.Popen(
            [TOOL, "-a", addr, "-q", "serve", vdi, "--listen", "127.0.0.1:0", *extra],
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.p.stdout.readline().split()[0]
        self.uri = line
        self.base = line.rsplit("/", 1)[0]

    def peak_rss_kib(self):
        with open(f"/proc/{self.p.pid}/status") as f:
            m = re.search(r"VmHWM:\s+(\d+)", f.read())
        return int(m.group(1))

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        if self.p.wait(timeout=120) != 0:
            sys.exit("error: serve did not exit 0 on SIGTERM")


def same(a, b):
    run(["cmp", a, b])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--address", help="a cluster's gateway HOST:PORT")
    ap.add_argument("--smoke", action="store_true", help="small, once, against the reference server")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()
    for tool in ["qemu-img", "nbdcopy"]:
        if not shutil.which(tool):
            sys.exit(f"error: {tool} not found (scripts/setup installs qemu-utils and libnbd-bin)")
    work = tempfile.mkdtemp(prefix="nbd-bench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    ref = None
    try:
        if a.smoke or not a.address:
            a.runs, a.size_mib = 1, 32
            store = os.path.join(work, "store")
            os.mkdir(store)
            ref = subprocess.Popen([REF, "--listen", "127.0.0.1:0", "--dir", store], stdout=subprocess.PIPE, text=True)
            a.address = ref.stdout.readline().split()[-1]
        bench(a, work)
    finally:
        if ref:
            ref.kill()
        shutil.rmtree(work, ignore_errors=True)


def bench(a, work):
    size = a.size_mib * MIB
    imgs = images(work, size)
    out = os.path.join(work, "out.raw")
    results = {"size_mib": a.size_mib, "runs": a.runs, "copy": {}, "bench": {}}
    n = [0]

    def fresh():
        n[0] += 1
        name = f"nbdbench{os.getpid()}-{n[0]}"
        run([TOOL, "-a", a.address, "-q", "create", name, str(size)])
        return name

    def drop(name):
        run([TOOL, "-a", a.address, "-q", "delete", name])

    volumes = {}
    print(f"{a.size_mib} MiB images, median of {a.runs}, MiB/s (ratio to import/export)")
    for kind, img in imgs.items():
        row = {}
        # Into the cluster.
        for way in ["import", "qemu-img convert", "nbdcopy"]:
            times = []
            for _ in range(a.runs):
                v = fresh()
                if way == "import":
                    times.append(timed([TOOL, "-a", a.address, "-q", "import", img, v]))
                else:
                    s = Serve(a.address, v)
                    if way == "qemu-img convert":
                        cmd = ["qemu-img", "convert", "-n", "-m", "16", "-W", "-f", "raw", "-O", "raw", img, s.uri]
                    else:
                        cmd = ["nbdcopy", img, s.uri]
                    times.append(timed(cmd))
                    s.stop()
                run([TOOL, "-a", a.address, "-q", "export", v, out])
                same(out, img)
                drop(v)
            row["in " + way] = size / MIB / statistics.median(times)
        # Out of the cluster.
        v = fresh()
        run([TOOL, "-a", a.address, "-q", "import", img, v])
        volumes[kind] = v
        for way in ["export", "qemu-img convert", "nbdcopy"]:
            times = []
            for _ in range(a.runs):
                if os.path.exists(out):
                    os.unlink(out)
                if way == "export":
                    times.append(timed([TOOL, "-a", a.address, "-q", "export", v, out]))
                else:
                    s = Serve(a.address, v)
                    if way == "qemu-img convert":
                        cmd = ["qemu-img", "convert", "-m", "16", "-W", "-f", "raw", "-O", "raw", s.uri, out]
                    else:
                        cmd = ["nbdcopy", s.uri, out]
                    times.append(timed(cmd))
                    s.stop()
                same(out, img)
            row["out " + way] = size / MIB / statistics.median(times)
        results["copy"][kind] = row
        for d in ["in", "out"]:
            base = row[f"{d} import"] if d == "in" else row["out export"]
            cells = "  ".join(
                f"{k[len(d) + 1:]} {v:7.1f} ({v / base:.2f})" for k, v in row.items() if k.startswith(d)
            )
            print(f"  {kind:6} {d:3}  {cells}")

    # 4 KiB requests, depth 1 and 16, on the dense volume (every read
    # goes to the cluster: it has no holes but a 10 MiB zero stretch).
    drop(volumes["sparse"])
    v = volumes["dense"]
    s = Serve(a.address, v)
    count = 2000 if a.smoke else 20000
    # A step of an odd number of 4 KiB blocks spreads the requests over
    # the volume (qemu-img bench wraps at its end).
    step = str(4096 * 7919)
    for write in [False, True]:
        for depth in [1, 16]:
            cmd = ["qemu-img", "bench", "-f", "raw", "-t", "none", "-n", "-c", str(count), "-d", str(depth),
                   "-s", "4096", "-S", step]
            if write:
                cmd += ["-w", "--pattern", "0x5a"]
            secs = []
            for _ in range(a.runs):
                text = run(cmd + [s.uri])
                secs.append(float(re.search(r"Run completed in ([\d.]+) seconds", text).group(1)))
            t = statistics.median(secs)
            iops = count / t
            key = f"{'write' if write else 'read'} depth {depth}"
            results["bench"][key] = {"iops": iops, "latency_us": 1e6 * depth / iops}
            print(f"  4K {key:15} {iops:8.0f} IOPS  {1e6 * depth / iops:7.0f} us per request")
    r1, r16 = results["bench"]["read depth 1"]["iops"], results["bench"]["read depth 16"]["iops"]
    print(f"  reads: depth 16 is {r16 / r1:.1f} times depth 1")
    s.stop()

    # Peak RSS with 4 clients at depth 64.
    s = Serve(a.address, v)
    procs = [
        subprocess.Popen(["qemu-img", "bench", "-f", "raw", "-t", "none", "-n", "-c", str(count * 2), "-d", "64",
                          "-s", "65536", "-o", str(i * 64 * MIB % size), s.uri],
                         stdout=subprocess.DEVNULL)
        for i in range(4)
    ]
    procs.append(subprocess.Popen(["nbdcopy", "--connections", "4", "--requests", "64", s.uri, "null:"]))
    for p in procs:
        if p.wait() != 0:
            sys.exit("error: a client failed during the RSS run")
    rss = s.peak_rss_kib()
    s.stop()
    results["peak_rss_mib"] = rss / 1024
    print(f"  peak RSS of serve with 4 qemu-img bench -d 64 and nbdcopy -C 4 -R 64: {rss / 1024:.1f} MiB")
    drop(v)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
