#!/usr/bin/env python3
"""QEMU's in-process Sheepdog driver against `serve`, through one qemu-img.

QEMU 5.2 was the last QEMU with the Sheepdog block driver (built only with
`--enable-sheepdog`). One such qemu-img (--qemu-img) drives the same VDI of
random data three ways, alternating, --runs times:

* driver:    the `sheepdog://HOST:PORT/VDI` driver, in qemu-img's process,
* nbd-tcp:   its NBD client to `sheep-tool serve --listen`,
* nbd-unix:  the same over `serve --socket`;

`nbd-tcp/200` is serve with `--poll-max-us 200`, and so on.

Cases: `qemu-img bench -f raw -t none -n -s 4k -S 4198400` (4 KiB requests
spread over the volume) at depth 1 and 16, reads and writes; sequential
reads and writes of the whole volume with `qemu-img convert -m 16 -W`
(reads into the null-co driver, writes from a raw file on /dev/shm).
Prints the median of each cell, the ratio of each path to the driver, and
for serve the server's CPU time per request (from /proc/PID/stat).
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "target", "release", "sheep-tool")
MIB = 1 << 20
HZ = os.sysconf("SC_CLK_TCK")


def run(cmd, **kw):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    if r.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed ({r.returncode}): {r.stderr.decode(errors='replace').strip()}")
    return r


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


class Path:
    """One way to the VDI: its URI for qemu-img, and the server behind it."""

    def __init__(self, name, a, vdi, work):
        # "nbd-tcp/200": serve with --poll-max-us 200.
        self.name, self.poll = (name.split("/") + [None])[:2]
        self.a, self.vdi, self.work, self.srv = a, vdi, work, None

    def __enter__(self):
        host, port = self.a.address.rsplit(":", 1)
        if self.name == "driver":
            self.uri = f"sheepdog://{host}:{port}/{self.vdi}"
            return self
        if self.name == "nbd-tcp":
            listen = ["--listen", "127.0.0.1:10898"]
            self.uri = f"nbd://127.0.0.1:10898/{self.vdi}"
        else:
            sock = os.path.join(self.work, "serve.sock")
            listen = ["--socket", sock]
            self.uri = f"nbd+unix:///{self.vdi}?socket={sock}"
        poll = ["--poll-max-us", self.poll] if self.poll else []
        self.srv = subprocess.Popen([TOOL, "-a", self.a.address, "serve", self.vdi, *listen, *poll,
                                     *self.a.serve_args.split()],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if subprocess.run([self.a.qemu_img, "info", self.uri], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0:
                return self
            time.sleep(0.05)
        sys.exit(f"error: serve did not answer on {self.uri}")

    def __exit__(self, *exc):
        if self.srv:
            self.srv.terminate()
            self.srv.wait()
            time.sleep(0.3)

    def timed(self, cmd):
        """Runs cmd; returns (seconds, server CPU seconds or None)."""
        c0 = cpu_ticks(self.srv.pid) if self.srv else None
        t0 = time.monotonic()
        run(cmd)
        t = time.monotonic() - t0
        c = (cpu_ticks(self.srv.pid) - c0) / HZ if self.srv else None
        return t, c


def cases(a, img):
    qi = a.qemu_img
    size = a.size_mib * MIB
    bench = [qi, "bench", "-f", "raw", "-t", "none", "-n", "-s", "4k", "-S", "4198400", "-c", str(a.count)]
    for name, extra, depth in [("4K random read, depth 1", [], 1), ("4K random write, depth 1", ["-w"], 1),
                               ("4K random read, depth 16", [], 16), ("4K random write, depth 16", ["-w"], 16)]:
        yield name, "IOPS", a.count, lambda uri, e=extra, d=depth: bench + e + ["-d", str(d), uri]
    yield ("sequential read", "MiB/s", a.size_mib,
           lambda uri: [qi, "convert", "-n", "-f", "raw", "-T", "none", "-m", "16", "-W", uri,
                        "--target-image-opts", f"driver=null-co,size={size}"])
    yield ("sequential write", "MiB/s", a.size_mib,
           lambda uri: [qi, "convert", "-n", "-f", "raw", "-O", "raw", "-t", "none", "-m", "16", "-W", img, uri])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--address", required=True, help="a cluster node HOST:PORT")
    ap.add_argument("--qemu-img", required=True, help="a qemu-img with the sheepdog driver (QEMU 5.2)")
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--count", type=int, default=20000, help="requests per qemu-img bench")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--paths", default="driver,nbd-tcp,nbd-unix",
                    help="driver, nbd-tcp, nbd-unix; nbd-tcp/N serves with --poll-max-us N")
    ap.add_argument("--serve-args", default="", help="more arguments for serve (e.g. '--poll-max-us 200')")
    a = ap.parse_args()
    help_text = subprocess.run([a.qemu_img, "--help"], stdout=subprocess.PIPE).stdout.decode()
    if " sheepdog" not in help_text:
        sys.exit(f"error: {a.qemu_img} has no sheepdog driver (QEMU 5.2 built with --enable-sheepdog has)")
    work = tempfile.mkdtemp(prefix="bench-driver-", dir="/dev/shm")
    vdi = f"bench-driver-{os.getpid()}"
    img = os.path.join(work, "img.raw")
    with open(img, "wb") as f:
        f.write(os.urandom(a.size_mib * MIB))
    run([TOOL, "-a", a.address, "import", img, vdi])
    paths = a.paths.split(",")
    rows = []
    try:
        for name, unit, amount, cmd in cases(a, img):
            times = {p: [] for p in paths}
            cpus = {p: [] for p in paths}
            for _ in range(a.runs):
                for p in paths:
                    with Path(p, a, vdi, work) as path:
                        t, c = path.timed(cmd(path.uri))
                    times[p].append(t)
                    if c is not None:
                        cpus[p].append(c / (a.count if unit == "IOPS" else amount))
            rate = {p: amount / statistics.median(times[p]) for p in paths}
            rows.append((name, unit, rate, {p: statistics.median(v) for p, v in cpus.items() if v}))
            line = f"{name:28} " + " ".join(f"{p} {rate[p]:9.0f}" for p in paths)
            print(line, flush=True)
    finally:
        subprocess.run([TOOL, "-a", a.address, "delete", vdi], stdout=subprocess.DEVNULL)
        os.unlink(img)
        os.rmdir(work)
    base = paths[0]
    print()
    print(f"| case | {' | '.join(paths)} | " + " | ".join(f"{p} / {base}" for p in paths[1:]) + " |")
    print("|---|" + "---:|" * (2 * len(paths) - 1))
    for name, unit, rate, _ in rows:
        cells = [f"{rate[p]:,.0f} {unit}" if p == base else f"{rate[p]:,.0f}" for p in paths]
        ratios = [f"{rate[p] / rate[base]:.2f}" for p in paths[1:]]
        print(f"| {name} | " + " | ".join(cells + ratios) + " |")
    print()
    print("serve's CPU per request (4K rows, µs) or per MiB (sequential, ms):")
    for name, unit, _, cpu in rows:
        scale = 1e6 if unit == "IOPS" else 1e3
        print(f"  {name:28} " + " ".join(f"{p} {v * scale:.1f}" for p, v in cpu.items()))


if __name__ == "__main__":
    main()
