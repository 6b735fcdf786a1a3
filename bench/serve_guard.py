#!/usr/bin/env python3
"""`sheep-tool serve` against careless and hostile clients, in numbers.

1. Option flood: a client sends NBD_OPT_LIST options without reading a
   reply (up to --options of them); the server's RSS is sampled as it
   goes, with how many options the kernel and the server took.
2. Hogs: a good client's 4 KiB reads at depth 1 (median and 99th
   percentile latency), alone, then while four connections pipeline
   10,000 reads of 64 KiB each and never read a reply.
3. Idle connects: under `ulimit -n 1024`, 1,100 connections that never
   say a word; the server's open descriptors, whether a new client is
   served (and how long it waits), and the descriptors after the
   handshake limit.
4. TLS: `nbdcopy` of --size MiB into an export and out of it over
   `nbds://`, against plain `nbd://` (median of --runs).

    bench/serve-guard --address 127.0.0.1:7000   # a real cluster
    bench/serve-guard --smoke                    # the bundled reference server
"""

import argparse
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "target", "release", "sheep-tool")
REF = os.path.join(ROOT, "target", "release", "sheep-ref")
MIB = 1 << 20
IHAVEOPT = 0x49484156454F5054


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


class Serve:
    """`sheep-tool serve` on a free port (under `prefix`, a shell prefix
    such as a ulimit)."""

    def __init__(self, address, args, prefix=""):
        self.port = free_port()
        cmd = [TOOL, "-q", "-a", address, "serve", *args, "--listen", f"127.0.0.1:{self.port}"]
        if prefix:
            cmd = ["sh", "-c", prefix + ' && exec "$@"', "sh", *cmd]
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.p.stdout.readline()

    def uri(self, export, scheme="nbd", host="127.0.0.1"):
        return f"{scheme}://{host}:{self.port}/{export}"

    def stop(self):
        self.p.terminate()
        try:
            self.p.wait(60)
        except subprocess.TimeoutExpired:
            self.p.kill()


def option(code, data=b""):
    return struct.pack(">QII", IHAVEOPT, code, len(data)) + data


def greeted(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    recv_exact(s, 18)
    s.sendall(struct.pack(">I", 3))
    return s


def recv_exact(s, n):
    b = bytearray()
    while len(b) < n:
        chunk = s.recv(n - len(b))
        if not chunk:
            raise ConnectionError("closed")
        b += chunk
    return bytes(b)


def opened(port, export):
    s = greeted(port)
    name = export.encode()
    s.sendall(option(7, struct.pack(">I", len(name)) + name + struct.pack(">H", 0)))
    while True:
        h = recv_exact(s, 20)
        kind, length = struct.unpack(">II", h[12:20])
        recv_exact(s, length)
        if kind == 1:
            return s
        if kind != 3:
            raise ConnectionError(f"GO refused {kind:#x}")


def read_req(cookie, offset, length):
    return struct.pack(">IHHQQI", 0x25609513, 0, 0, cookie, offset, length)


def read(s, cookie, offset, length):
    s.sendall(read_req(cookie, offset, length))
    h = recv_exact(s, 16)
    if struct.unpack(">I", h[4:8])[0] != 0:
        raise IOError("NBD error")
    return recv_exact(s, length)


def latencies(port, export, n, size):
    s = opened(port, export)
    s.settimeout(30)
    took = []
    blocks = size // 4096
    for i in range(n):
        at = (i * 7919 % blocks) * 4096
        t = time.monotonic()
        read(s, i, at, 4096)
        took.append(time.monotonic() - t)
    s.close()
    took.sort()
    return took[len(took) // 2], took[len(took) * 99 // 100]


def flood_case(a, address):
    srv = Serve(address, ["vm"])
    time.sleep(0.5)
    s = greeted(srv.port)
    s.setblocking(False)
    burst = option(3) * 65536
    want = a.options * 16
    sent = 0
    samples = [(0, rss(srv.p.pid))]
    next_sample = want // 4
    stuck_since = None
    while sent < want:
        try:
            n = s.send(burst[: min(len(burst), want - sent)])
            sent += n
            stuck_since = None
        except BlockingIOError:
            stuck_since = stuck_since or time.monotonic()
            if time.monotonic() - stuck_since > 3:
                break
            time.sleep(0.01)
        if sent >= next_sample:
            samples.append((sent // 16, rss(srv.p.pid)))
            next_sample += want // 4
    time.sleep(0.5)
    samples.append((sent // 16, rss(srv.p.pid)))
    s.close()
    srv.stop()
    print(f"option flood: {sent // 16:,} of {a.options:,} options taken "
          f"(the rest held back by TCP)")
    for n, r in samples:
        print(f"  after {n:>12,} options: RSS {r / MIB:.1f} MiB")


def hogs_case(a, address):
    srv = Serve(address, ["vm"])
    time.sleep(0.5)
    alone = latencies(srv.port, "vm", a.reads, a.size * MIB)
    hogs = []
    for n in range(4):
        s = opened(srv.port, "vm")
        reqs = b"".join(read_req(n << 32 | i, (i % 256) * 65536, 65536) for i in range(10000))
        s.settimeout(3)
        try:
            s.sendall(reqs)
        except OSError:
            pass
        hogs.append(s)
    time.sleep(2)
    busy = latencies(srv.port, "vm", a.reads, a.size * MIB)
    held = rss(srv.p.pid)
    for s in hogs:
        s.close()
    srv.stop()
    print(f"4 KiB reads at depth 1 ({a.reads} of them), median / 99th percentile:")
    print(f"  alone:                    {alone[0] * 1e3:.2f} ms / {alone[1] * 1e3:.2f} ms")
    print(f"  while 4 connections hog:  {busy[0] * 1e3:.2f} ms / {busy[1] * 1e3:.2f} ms "
          f"(server RSS {held / MIB:.0f} MiB)")


def idle_case(a, address):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # This client needs its own 1,100 descriptors and more.
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    srv = Serve(address, ["vm"], prefix="ulimit -n 1024")
    time.sleep(0.5)
    conns = []
    for _ in range(1100):
        try:
            conns.append(socket.create_connection(("127.0.0.1", srv.port), timeout=2))
        except OSError:
            break
    time.sleep(0.5)
    during = fds(srv.p.pid)
    t = time.monotonic()
    served = None
    while time.monotonic() - t < 30:
        try:
            s = opened(srv.port, "vm")
            read(s, 1, 0, 4096)
            s.close()
            served = time.monotonic() - t
            break
        except OSError:
            time.sleep(0.2)
    time.sleep(11)
    after = fds(srv.p.pid)
    for c in conns:
        c.close()
    srv.stop()
    print(f"{len(conns)} idle connections under ulimit -n 1024: {during} descriptors open; "
          + (f"a new client served after {served:.1f} s" if served is not None
             else "no new client served within 30 s")
          + f"; {after} descriptors after the handshake limit")


def tls_case(a, address, d):
    creds = make_creds(d)
    img = os.path.join(d, "tls.raw")
    with open(img, "wb") as f:
        f.write(os.urandom(a.size * MIB))
    out = os.path.join(d, "out.raw")
    rows = []
    for label, args, uri in [
        ("plain", ["vm"], lambda s: s.uri("vm")),
        ("TLS", ["vm", "--tls-creds", creds + "/server"],
         lambda s: s.uri("vm", "nbds", "localhost") + f"?tls-certificates={creds}/client"),
    ]:
        srv = Serve(address, args)
        ins, outs = [], []
        for _ in range(a.runs):
            t = time.monotonic()
            run(["nbdcopy", img, uri(srv)])
            ins.append(time.monotonic() - t)
            t = time.monotonic()
            run(["nbdcopy", uri(srv), out])
            outs.append(time.monotonic() - t)
        srv.stop()
        if open(out, "rb").read() != open(img, "rb").read():
            sys.exit(f"error: nbdcopy over {label} read back other bytes")
        rows.append((label, a.size / statistics.median(ins), a.size / statistics.median(outs)))
    print(f"nbdcopy of {a.size} MiB (median of {a.runs}):")
    for label, i, o in rows:
        print(f"  {label:<6} in {i:7.1f} MiB/s   out {o:7.1f} MiB/s")


def make_creds(d):
    root = os.path.join(d, "creds")
    os.makedirs(root)

    def ossl(*args):
        run(["openssl", *args], cwd=root)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ossl("req", "-x509", *ec, "-days", "30", "-subj", "/CN=bench-ca", "-keyout", "ca-key.pem",
         "-out", "ca-cert.pem", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for name, cn, ext in [
        ("server", "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
         "extendedKeyUsage=serverAuth\n"),
        ("client", "client", "extendedKeyUsage=clientAuth\n"),
    ]:
        with open(os.path.join(root, name + ".ext"), "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\n" + ext)
        ossl("req", *ec, "-subj", f"/CN={cn}", "-keyout", f"{name}-key.pem", "-out", f"{name}.csr")
        ossl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca-cert.pem", "-CAkey", "ca-key.pem",
             "-CAcreateserial", "-days", "30", "-out", f"{name}-cert.pem",
             "-extfile", f"{name}.ext")
        os.makedirs(os.path.join(root, name))
        for f in ["ca-cert.pem", f"{name}-cert.pem", f"{name}-key.pem"]:
            shutil.copy(os.path.join(root, f), os.path.join(root, name, f))
    return root


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--address", help="gateway HOST:PORT (default: start the reference server)")
    p.add_argument("--size", type=int, default=256, help="volume and copy size in MiB (default 256)")
    p.add_argument("--options", type=int, default=8_000_000, help="options in the flood (default 8 million)")
    p.add_argument("--reads", type=int, default=2000, help="latency samples per case (default 2000)")
    p.add_argument("--runs", type=int, default=3, help="nbdcopy runs per direction (default 3)")
    p.add_argument("--smoke", action="store_true", help="small and quick, on the reference server")
    p.add_argument("--cases", default="flood,hogs,idle,tls",
                   help="which cases, comma separated (default all: flood,hogs,idle,tls)")
    p.add_argument("--tool", help="the sheep-tool binary to measure (default: this build's)")
    a = p.parse_args()
    global TOOL
    TOOL = a.tool or TOOL
    if a.smoke:
        a.size, a.options, a.reads, a.runs = 32, 200_000, 200, 1
    ref = None
    address = a.address
    if not address:
        port = free_port()
        ref = subprocess.Popen([REF, "--listen", f"127.0.0.1:{port}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        address = f"127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as d:
        try:
            subprocess.run([TOOL, "-q", "-a", address, "delete", "vm"], capture_output=True)
            run([TOOL, "-q", "-a", address, "create", "vm", f"{a.size}M"])
            img = os.path.join(d, "vm.raw")
            with open(img, "wb") as f:
                f.write(os.urandom(a.size * MIB))
            run([TOOL, "-q", "-a", address, "import", img, "vm"])
            cases = a.cases.split(",")
            if "flood" in cases:
                flood_case(a, address)
            if "hogs" in cases:
                hogs_case(a, address)
            if "idle" in cases:
                idle_case(a, address)
            if "tls" in cases:
                tls_case(a, address, d)
        finally:
            if ref:
                ref.terminate()


if __name__ == "__main__":
    main()
