#!/usr/bin/env python3
"""fio in a guest, on a volume attached three ways.

A VDI of --size-mib MiB (random data) is attached to a Linux guest
(scripts/guest-image; 2 vCPUs, TCG unless GUEST_ACCEL says otherwise) as
a virtio-blk disk through:

* nbd-tcp:   QEMU's NBD client to `sheep-tool serve --listen`,
* nbd-unix:  the same over `serve --socket`,
* vhost:     `sheep-tool serve --vhost-user-blk` (2 queues, memfd memory),
* driver:    QEMU's own Sheepdog driver (`sheepdog://HOST:PORT/VDI`), for a
             QEMU that has it (5.2, built with --enable-sheepdog); not in
             the default --paths.

In the guest, fio (libaio, direct) runs 4 KiB random reads and writes at
depth 1 and 16 and 1 MiB sequential reads and writes at depth 4, each for
--runtime seconds: IOPS, MiB/s and completion latency percentiles (50th,
99th). Under TCG the guest's CPU is the limit: the figures compare the
paths under one guest, not the paths' own ceiling.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "target", "release", "sheep-tool")
MIB = 1 << 20
JOBS = [
    ("4k randread d1", "randread", "4k", 1),
    ("4k randread d16", "randread", "4k", 16),
    ("4k randwrite d1", "randwrite", "4k", 1),
    ("4k randwrite d16", "randwrite", "4k", 16),
    ("1M read d4", "read", "1M", 4),
    ("1M write d4", "write", "1M", 4),
]


def run(cmd, **kw):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    if r.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed ({r.returncode}): {r.stderr.decode(errors='replace').strip()}")
    return r


def guest_script(runtime):
    lines = ["set -e"]
    for name, rw, bs, depth in JOBS:
        lines.append(
            f"echo 'FIO-BEGIN {name}'; fio --name=j --filename=/dev/vda --rw={rw} --bs={bs} "
            f"--iodepth={depth} --ioengine=libaio --direct=1 --runtime={runtime} --time_based "
            f"--size=200M --output-format=json; echo 'FIO-END'"
        )
    return "\n".join(lines) + "\n"


def boot(guest, script, qemu_args, timeout):
    env = dict(os.environ, GUEST_MEM="512M", GUEST_TIMEOUT=str(timeout))
    r = subprocess.run([os.path.join(ROOT, "scripts", "guest-run"), guest, script, *qemu_args],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out = r.stdout.decode(errors="replace")
    if r.returncode != 0:
        sys.exit(f"error: the guest failed ({r.returncode}):\n{out[-3000:]}")
    results, name, buf = {}, None, None
    for line in out.splitlines():
        if line.startswith("FIO-BEGIN "):
            name, buf = line[len("FIO-BEGIN "):].strip(), []
        elif line.startswith("FIO-END") and name:
            text = "\n".join(buf)
            j = json.loads(text[text.index("{"):])
            job = j["jobs"][0]
            side = job["read"] if job["read"]["io_bytes"] > 0 else job["write"]
            pct = side["clat_ns"].get("percentile", {})
            results[name] = (side["iops"], side["bw_bytes"] / MIB,
                             pct.get("50.000000", 0) / 1000, pct.get("99.000000", 0) / 1000)
            name = None
        elif name is not None:
            buf.append(line)
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--address", required=True, help="a cluster node HOST:PORT")
    ap.add_argument("--guest", required=True, help="the directory scripts/guest-image made")
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--runtime", type=int, default=10)
    ap.add_argument("--paths", default="nbd-tcp,nbd-unix,vhost",
                    help="nbd-tcp, nbd-unix, vhost, driver; vhost/N serves with --poll-max-us N")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-guest-")
    vdi = f"bench-guest-{os.getpid()}"
    tool = lambda *args: [TOOL, "-a", a.address, *args]
    img = os.path.join(work, "img.raw")
    with open(img, "wb") as f:
        f.write(os.urandom(a.size_mib * MIB))
    run(tool("import", img, vdi))
    os.unlink(img)
    script = os.path.join(work, "fio.sh")
    with open(script, "w") as f:
        f.write(guest_script(a.runtime))
    table = {}
    try:
        for spec in a.paths.split(","):
            # "vhost/200": serve with --poll-max-us 200.
            path, poll = (spec.split("/") + [None])[:2]
            tool_serve = lambda *args: tool("serve", *args, *(["--poll-max-us", poll] if poll else []))
            sock = os.path.join(work, f"{path}.sock")
            if path == "driver":
                srv = None
                qemu = ["-drive", f"file=sheepdog://{a.address}/{vdi},format=raw,if=virtio,cache=none"]
            elif path == "nbd-tcp":
                srv = subprocess.Popen(tool_serve(vdi, "--listen", "127.0.0.1:10899"),
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                qemu = ["-drive", f"file=nbd://127.0.0.1:10899/{vdi},format=raw,if=virtio,cache=none"]
            elif path == "nbd-unix":
                srv = subprocess.Popen(tool_serve(vdi, "--socket", sock),
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                qemu = ["-drive", f"file=nbd+unix:///{vdi}?socket={sock},format=raw,if=virtio,cache=none"]
            else:
                srv = subprocess.Popen(tool_serve(vdi, "--vhost-user-blk", sock),
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                qemu = ["-object", "memory-backend-memfd,id=mem,size=512M,share=on",
                        "-numa", "node,memdev=mem", "-chardev", f"socket,id=c,path={sock}",
                        "-device", "vhost-user-blk-pci,chardev=c,num-queues=2"]
            time.sleep(1.5)
            try:
                table[spec] = boot(a.guest, script, qemu, 60 + len(JOBS) * (a.runtime + 20))
            finally:
                if srv:
                    srv.terminate()
                    srv.wait()
                time.sleep(2.5)  # the lock goes with the last client
        print(f"{'job':18}" + "".join(f" {p + ' IOPS':>14} {'MiB/s':>7} {'p50 us':>7} {'p99 us':>7}" for p in table))
        for name, *_ in JOBS:
            row = f"{name:18}"
            for p in table:
                iops, mibs, p50, p99 = table[p].get(name, (0, 0, 0, 0))
                row += f" {iops:14.0f} {mibs:7.1f} {p50:7.0f} {p99:7.0f}"
            print(row)
    finally:
        run(tool("delete", vdi))


if __name__ == "__main__":
    main()
