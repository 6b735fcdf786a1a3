"""Import and export benchmarks for sheep-tool, with dog side by side.

Every figure is the median of --runs runs, ours and dog's alternating in
one session (the component and the native tool alternate too); every run
starts after a sync, with no writeback pending. Peak RSS comes from
/usr/bin/time, wall time from the monotonic clock, CPU time from rusage.
Without --address the bundled reference server is started on a free
loopback port (a smoke check: its figures say nothing about a real
cluster).
"""

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "target/release/sheep-tool")
WASM = os.path.join(ROOT, "target/wasm32-wasip2/release/sheep-tool.wasm")
REF = os.path.join(ROOT, "target/release/sheep-ref")
MIB = 1 << 20


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--address", help="gateway HOST:PORT (default: start the reference server)")
    p.add_argument("--size", type=int, default=256, help="image size in MiB (default 256)")
    p.add_argument("--runs", type=int, default=3, help="runs per case (default 3)")
    p.add_argument("--depths", default="", help="queue depths to sweep, e.g. '1 2 4 8 16 32'")
    p.add_argument("--huge", type=int, default=4096, help="size in MiB of the sparse RSS image (default 4096)")
    p.add_argument("--no-wasm", action="store_true", help="skip the wasmtime runs")
    p.add_argument("--smoke", action="store_true", help="small and quick: 32 MiB, one run, no sweep")
    a = p.parse_args()
    if a.smoke:
        a.size, a.runs, a.depths, a.huge = 32, 1, "", 256
    return a


class Timed:
    """One command's wall time, CPU time and peak RSS."""

    def __init__(self, wall, user, sys_, rss_kb):
        self.wall, self.cpu, self.rss = wall, user + sys_, rss_kb * 1024


def quiesce():
    """Write back every dirty page first (the cluster's objects, earlier
    outputs), so that no run pays for the writeback of the one before."""
    os.sync()


def timed(cmd, stdin=None, stdout=None):
    """Peak RSS from /usr/bin/time; wall time from the monotonic clock
    around it and CPU time from the microsecond rusage of the finished
    child (time prints only 10 ms)."""
    quiesce()
    fd, out = tempfile.mkstemp()
    os.close(fd)
    full = ["/usr/bin/time", "-f", "%e %U %S %M", "-o", out] + cmd
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    r = subprocess.run(full, stdin=stdin, stdout=stdout or subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out) as f:
        rss = float(f.read().split()[-1])
    os.unlink(out)
    if r.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed: {r.stderr.decode(errors='replace').strip()}")
    user = after.ru_utime - before.ru_utime
    system = after.ru_stime - before.ru_stime
    return Timed(wall, user, system, rss)


def timed_group(cmds):
    """Several commands at once; wall time of the whole group."""
    quiesce()
    start = time.monotonic()
    procs = [subprocess.Popen(c, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for c in cmds]
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            sys.exit(f"error: parallel command failed: {err.decode(errors='replace').strip()}")
    return Timed(time.monotonic() - start, 0, 0, 0)


class Bench:
    def __init__(self, args, work):
        self.a = args
        self.work = work
        self.server = None
        if args.address:
            self.address = args.address
        else:
            self.server = subprocess.Popen(
                [REF, "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
            )
            line = self.server.stdout.readline().strip()
            self.address = line.rsplit(" ", 1)[-1]
        host, _, port = self.address.rpartition(":")
        self.dog = shutil.which("dog") if args.address else None
        self.dog_args = ["-a", host, "-p", port]
        self.wasmtime = None if args.no_wasm else shutil.which("wasmtime")
        if self.wasmtime and not os.path.exists(WASM):
            self.wasmtime = None
        self.rows = []

    def close(self):
        if self.server:
            self.server.kill()
            self.server.wait()

    # -- commands ---------------------------------------------------------

    def tool(self, *args, wasm=False):
        base = ["-a", self.address, "-q"]
        if wasm:
            return [self.wasmtime, "run", "-S", "inherit-network", "--dir", self.work, WASM] + base + list(args)
        return [TOOL] + base + list(args)

    def run_tool(self, *args):
        r = subprocess.run(self.tool(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return r.returncode == 0

    def dog_cmd(self, *args):
        return [self.dog, "vdi", args[0]] + self.dog_args + list(args[1:])

    def delete(self, name):
        self.run_tool("delete", name)

    # -- images -----------------------------------------------------------

    def make_images(self):
        size = self.a.size * MIB
        self.dense = os.path.join(self.work, "dense.raw")
        with open(self.dense, "wb") as f:
            for _ in range(self.a.size):
                f.write(os.urandom(MIB))
        self.sparse = os.path.join(self.work, "sparse.raw")
        self.huge = os.path.join(self.work, "huge.raw")
        for path, total in ((self.sparse, size), (self.huge, self.a.huge * MIB)):
            with open(path, "wb") as f:
                f.truncate(total)
                for off in range(0, total, 16 * MIB):
                    f.seek(off)
                    f.write(os.urandom(MIB))

    # -- cases --------------------------------------------------------------

    def record(self, case, who, results, size):
        wall = statistics.median(r.wall for r in results)
        cpu = statistics.median(r.cpu for r in results)
        rss = max(r.rss for r in results)
        mibs = size / MIB / wall if wall > 0 else float("inf")
        self.rows.append((case, who, wall, mibs, cpu * (1 << 30) / size if size else 0, rss))
        return mibs

    def check_export(self, out, image):
        r = subprocess.run(["cmp", out, image], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if r.returncode != 0:
            sys.exit(f"error: export {out} differs from {image}")

    def import_case(self, case, image, extra=(), wasm=False, dog=True, qd=None):
        size = os.path.getsize(image)
        name = "bench-" + case.replace(" ", "-")
        ours, dogs, par = [], [], []
        q = ["--queue-depth", str(qd)] if qd else []
        for _ in range(self.a.runs):
            self.delete(name)
            ours.append(timed(self.tool("import", image, name, *q, *extra, wasm=wasm)))
            if self.dog and dog:
                dname = name + "-dog"
                self.delete(dname)
                subprocess.run(self.dog_cmd("create", dname, str(size)), check=True)
                with open(image, "rb") as f:
                    dogs.append(timed(self.dog_cmd("write", dname), stdin=f))
                self.delete(dname)
                subprocess.run(self.dog_cmd("create", dname, str(size)), check=True)
                quarter = size // 4
                cmds = [
                    f"dd if={image} bs=1M skip={i * quarter // MIB} count={quarter // MIB} status=none | "
                    + " ".join(self.dog_cmd("write", dname, str(i * quarter), str(quarter)))
                    for i in range(4)
                ]
                par.append(timed_group(cmds))
                self.delete(dname)
        who = "sheep-tool" + (" (wasm)" if wasm else "") + (f" qd={qd}" if qd else "")
        mine = self.record(case, who, ours, size)
        if dogs:
            d = self.record(case, "dog", dogs, size)
            c = self.record(case, "4 x dog (ceiling)", par, size)
            self.rows.append((case, f"ratio: {mine / d:.2f} x dog, {100 * mine / c:.0f}% of ceiling", None, None, None, None))
        return name

    def export_case(self, case, vdi, image, wasm=False, dog=True, qd=None, extra=()):
        size = os.path.getsize(image)
        out = os.path.join(self.work, "out.raw")
        ours, dogs, par = [], [], []
        q = ["--queue-depth", str(qd)] if qd else []
        for _ in range(self.a.runs):
            if os.path.exists(out):
                os.unlink(out)
            ours.append(timed(self.tool("export", vdi, out, *q, *extra, wasm=wasm)))
            self.check_export(out, image)
            allocated = os.stat(out).st_blocks * 512
            if self.dog and dog:
                with open(out, "wb") as f:
                    dogs.append(timed(self.dog_cmd("read", vdi), stdout=f))
                self.check_export(out, image)
                quarter = size // 4
                cmds = [" ".join(self.dog_cmd("read", vdi, str(i * quarter), str(quarter))) + " > /dev/null" for i in range(4)]
                par.append(timed_group(cmds))
        sparse_blocks = allocated
        who = "sheep-tool" + (" (wasm)" if wasm else "") + (f" qd={qd}" if qd else "") + "".join(" " + e for e in extra)
        mine = self.record(case, who, ours, size)
        if sparse_blocks is not None and "sparse" in case:
            self.rows.append((case, f"output file: {sparse_blocks // MIB} MiB allocated of {size // MIB} MiB", None, None, None, None))
        if dogs:
            d = self.record(case, "dog", dogs, size)
            c = self.record(case, "4 x dog readers", par, size)
            self.rows.append((case, f"ratio: {mine / d:.2f} x dog ({c / d:.2f} x for 4 readers)", None, None, None, None))

    def wasm_case(self, case, image, vdi=None):
        """The component and the native tool alternating, run by run: an
        import of `image`, or with `vdi` an export of it compared with
        `image`. Rows for both and the ratio."""
        size = os.path.getsize(image)
        name = "bench-wasm-" + case.replace(" ", "-")
        out = os.path.join(self.work, "out.raw")
        native, wasm = [], []
        for _ in range(self.a.runs):
            for w, results in ((False, native), (True, wasm)):
                if vdi is None:
                    self.delete(name)
                    results.append(timed(self.tool("import", image, name, wasm=w)))
                else:
                    if os.path.exists(out):
                        os.unlink(out)
                    results.append(timed(self.tool("export", vdi, out, wasm=w)))
                    self.check_export(out, image)
        if vdi is None:
            self.delete(name)
        n = self.record(case, "sheep-tool (native, alternating)", native, size)
        m = self.record(case, "sheep-tool (wasm)", wasm, size)
        if n != float("inf"):
            self.rows.append((case, f"ratio: wasm at {100 * m / n:.0f}% of native", None, None, None, None))

    def run(self):
        self.make_images()
        d = self.import_case("dense import", self.dense)
        s = self.import_case("sparse import", self.sparse)
        self.export_case("dense export", d, self.dense)
        # Whole-object reads, above sheep's mmap threshold, for comparison.
        self.export_case("dense export", d, self.dense, dog=False, extra=("--request-size", "4M"))
        self.export_case("sparse export", s, self.sparse)
        if self.wasmtime:
            self.wasm_case("dense import", self.dense)
            self.wasm_case("dense export", self.dense, d)
            self.wasm_case("sparse import", self.sparse)
            self.wasm_case("sparse export", self.sparse, s)
        h = self.import_case(f"{self.a.huge} MiB sparse import", self.huge, dog=False)
        self.export_case(f"{self.a.huge} MiB sparse export", h, self.huge, dog=False)
        if self.wasmtime:
            self.wasm_case(f"{self.a.huge} MiB sparse import", self.huge)
            self.wasm_case(f"{self.a.huge} MiB sparse export", self.huge, h)
        for qd in [int(x) for x in self.a.depths.split()]:
            self.import_case("dense import", self.dense, dog=False, qd=qd)
            self.export_case("dense export", d, self.dense, dog=False, qd=qd)
        for name in (d, s, h):
            self.delete(name)

    def report(self):
        where = self.address + ("" if self.a.address else " (bundled reference server)")
        print(f"\nsheep-tool benchmark: {self.a.size} MiB images, median of {self.a.runs} run(s), gateway {where}")
        print(f"{'case':<26} {'client':<34} {'seconds':>8} {'MiB/s':>9} {'CPU s/GiB':>10} {'peak RSS':>10}")
        for case, who, wall, mibs, cpu, rss in self.rows:
            if wall is None:
                print(f"{case:<26}   {who}")
            else:
                rss_s = f"{rss / MIB:.0f} MiB" if rss else "-"
                cpu_s = f"{cpu:.3f}" if cpu else "-"
                print(f"{case:<26} {who:<34} {wall:>8.3f} {mibs:>9.1f} {cpu_s:>10} {rss_s:>10}")


def main():
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="sheep-bench-") as work:
        b = Bench(args, work)
        try:
            b.run()
        finally:
            b.close()
        b.report()


if __name__ == "__main__":
    main()
