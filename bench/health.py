#!/usr/bin/env python3
"""check of every copy, measured.

A VDI of --size-mib MiB of random data (1 GiB by default, 3 copies) is
checked, alternately, by `dog vdi check VDI` (with --dog) and by
`sheep-tool check VDI`, --runs times each: the median wall time and peak
RSS (/usr/bin/time). Requests: sheep-tool's own count (--json), and dog's
counted once under strace (every request header it sends). Then
`sheep-tool check --deep` (every replica read whole) once. Then the same
for a snapshot of the VDI, whose digests sheep caches after a first
check (a warm-up run): there the cluster answers each GET_HASH without
reading the object, and the time is the client's. Both checks must find
the VDI clean.

    bench/health --smoke                              # reference server, small
    bench/health --address 127.0.0.1:7000 --dog dog   # a real cluster
"""

import argparse
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "target", "release", "sheep-tool")
REF = os.path.join(ROOT, "target", "release", "sheep-ref")
MIB = 1 << 20


def run(cmd, ok=(0,), **kw):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    if r.returncode not in ok:
        err = r.stderr.decode(errors="replace").strip()
        sys.exit(f"error: {' '.join(cmd)} failed ({r.returncode}): {err}")
    return r


def measured(cmd):
    """(seconds, peak RSS MiB, the run) of `cmd` under /usr/bin/time."""
    start = time.monotonic()
    r = run(["/usr/bin/time", "-f", "RSS %M", *cmd])
    secs = time.monotonic() - start
    rss = int(re.findall(r"RSS (\d+)", r.stderr.decode())[-1]) / 1024
    return secs, rss, r


def dog_requests(dog, host, port, args):
    """Request headers dog sends for one check, counted with strace."""
    if not shutil.which("strace"):
        return None
    with tempfile.NamedTemporaryFile(suffix=".strace") as f:
        run(["strace", "-f", "-qq", "-xx", "-s", "2", "-e", "trace=sendmsg,write",
             "-o", f.name, dog, "vdi", "check", "-a", host, "-p", port, *args])
        text = open(f.name, encoding="utf-8", errors="replace").read()
    # A request header starts with proto_ver 0x02 or 0x0a and is 48 bytes.
    return len(re.findall(r'"\\x0[2a]\\x[0-9a-f]{2}"\.\.\., 48\)|iov_base="\\x0[2a]', text))


def compare(a, tool, host, port, vdi, dog_snap, label):
    ours, dogs = [], []
    dog_vdi = vdi.split("@")[0]
    for _ in range(a.runs):
        if a.dog:
            secs, rss, r = measured([a.dog, "vdi", "check", "-a", host, "-p", port, *dog_snap, dog_vdi])
            if b"fixed" in r.stdout or r.stderr.count(b"\n") > 1:
                sys.exit(f"error: dog found something: {r.stdout!r} {r.stderr!r}")
            dogs.append((secs, rss))
        secs, rss, r = measured(tool("check", vdi, "--json"))
        j = json.loads(r.stdout)
        if not j["clean"]:
            sys.exit(f"error: check found something: {j}")
        ours.append((secs, rss, j["requests"]))
    med = lambda xs, i: statistics.median(x[i] for x in xs)
    print(f"{'sheep-tool check' + label:36} {med(ours, 0):8.3f} {ours[0][2]:9d} {med(ours, 1):13.1f}")
    if not label:
        deep = measured(tool("check", vdi, "--deep", "--json"))
        dj = json.loads(deep[2].stdout)
        print(f"{'sheep-tool check --deep':36} {deep[0]:8.3f} {dj['requests']:9d} {deep[1]:13.1f}")
    if a.dog:
        reqs = dog_requests(a.dog, host, port, [*dog_snap, dog_vdi])
        print(f"{'dog vdi check' + label:36} {med(dogs, 0):8.3f} {reqs if reqs is not None else '-':>9} {med(dogs, 1):13.1f}")
        print(f"{'  dog / sheep-tool wall':36} {med(dogs, 0) / med(ours, 0):8.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--address", help="a real cluster's node HOST:PORT (default: start the reference server)")
    ap.add_argument("--dog", help="dog to compare with (needs --address)")
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="64 MiB, 1 run, reference server")
    a = ap.parse_args()
    if a.smoke:
        a.size_mib, a.runs = 64, 1
    ref = None
    work = tempfile.mkdtemp(prefix="bench-health-")
    try:
        if a.address is None:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            s.close()
            a.address = f"127.0.0.1:{port}"
            ref = subprocess.Popen([REF, "--listen", a.address, "--nodes", "3", "--copies", "3"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                    break
                except OSError:
                    time.sleep(0.05)
        host, port = a.address.rsplit(":", 1)
        tool = lambda *args: [TOOL, "-a", a.address, *args]
        vdi = f"bench-check-{os.getpid()}"
        img = os.path.join(work, "img.raw")
        rnd = random.Random(1)
        with open(img, "wb") as f:
            for _ in range(a.size_mib):
                f.write(rnd.randbytes(MIB))
        run(tool("create", vdi, f"{a.size_mib}M", "--copies", "3"))
        run(tool("import", img, vdi))
        os.unlink(img)
        print(f"VDI: {a.size_mib} MiB, 3 copies; median of {a.runs}")
        print(f"{'':36} {'wall s':>8} {'requests':>9} {'peak RSS MiB':>13}")
        compare(a, tool, host, port, vdi, [], "")
        run(tool("snapshot", "create", vdi, "--tag", "s1"))
        run(tool("check", f"{vdi}@s1"))
        compare(a, tool, host, port, f"{vdi}@s1", ["-s", "s1"], " (snapshot)")
        run(tool("delete", f"{vdi}@s1"))
        run(tool("delete", vdi))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if ref:
            ref.terminate()
            ref.wait()


if __name__ == "__main__":
    main()
