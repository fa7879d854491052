#!/usr/bin/env python3
"""The server's read paths under the load issue 29 found them failing under.

1. Artifact listings: a job folder holds one 1 GiB file (sparse: reading it
   costs the hash, not the disk); 4 clients list that job's artifacts in a
   loop while one client reads GET /jobs/{other} and records its latency.
   Printed: GET p50/p99/max with and without the listings, and how long
   each listing took.
2. /compare memory: a job's report.json of 16 MiB (numbers compare never
   shows), 4 concurrent GET /compare?ids=<id>x50. Printed: the server's peak
   RSS (VmHWM) before and after, and the requests' times.

Workers are a stand-in that sleeps (the jobs stay RUNNING), so the numbers
are the server's. Usage:
  bench/read_paths_bench.py [--server build/bin/qjobs-server] [--seconds 10]
Not a test: CI does not run it.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request


def vmhwm(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def get(url, timeout=600):
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=timeout) as r:
        body = r.read()
    return time.perf_counter() - t, body


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default="build/bin/qjobs-server")
    ap.add_argument("--seconds", type=float, default=10)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="qjobs-readpaths.")
    sleeper = os.path.join(work, "sleeper")
    with open(sleeper, "w") as f:
        f.write("#!/bin/sh\nexec sleep 600\n")
    os.chmod(sleeper, 0o755)
    out = open(os.path.join(work, "server.out"), "w+")
    srv = subprocess.Popen([a.server, "--listen", "127.0.0.1:0", "--user-data", os.path.join(work, "ud"),
                            "--slots", "2", "--worker", sleeper, "--log-level", "warn"],
                           stdout=out, stderr=subprocess.DEVNULL)
    try:
        port = None
        for _ in range(100):
            out.seek(0)
            text = out.read()
            if "listening on" in text:
                port = text.split("listening on ")[1].split()[0].rsplit(":", 1)[1].rstrip(",;")
                break
            time.sleep(0.1)
        url = f"http://127.0.0.1:{port}"
        ids = []
        for _ in range(2):
            model = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "kjv-llama")
            req = urllib.request.Request(url + "/jobs", data=f"MODEL: \"{os.path.abspath(model)}\"\nALGORITHM: RTN\n".encode(),
                                         headers={"Content-Type": "application/yaml"}, method="POST")
            ids.append(json.loads(urllib.request.urlopen(req).read())["id"])
        a_dir = os.path.join(work, "ud", "jobs", ids[0])
        with open(os.path.join(a_dir, "big.bin"), "wb") as f:
            f.truncate(1 << 30)

        def reads(seconds):
            lat = []
            end = time.time() + seconds
            while time.time() < end:
                lat.append(get(f"{url}/jobs/{ids[1]}")[0])
            return lat

        idle = reads(3)
        listing_times = []
        stop = threading.Event()

        def lister():
            while not stop.is_set():
                listing_times.append(get(f"{url}/jobs/{ids[0]}/artifacts")[0])

        threads = [threading.Thread(target=lister) for _ in range(4)]
        for t in threads:
            t.start()
        busy = reads(a.seconds)
        stop.set()
        for t in threads:
            t.join()
        ms = lambda x: f"{1000 * x:.1f} ms"
        print("| GET /jobs/{other} | p50 | p99 | max | requests |")
        print("|---|---|---|---|---|")
        print(f"| idle | {ms(pct(idle, 50))} | {ms(pct(idle, 99))} | {ms(max(idle))} | {len(idle)} |")
        print(f"| 4 listings of a 1 GiB job in a loop | {ms(pct(busy, 50))} | {ms(pct(busy, 99))} | {ms(max(busy))} | {len(busy)} |")
        print(f"listings: {len(listing_times)} in {a.seconds:.0f} s, median {ms(statistics.median(listing_times))}, "
              f"max {ms(max(listing_times))}")

        b_dir = os.path.join(work, "ud", "jobs", ids[1])
        with open(os.path.join(b_dir, "report.json"), "w") as f:
            f.write('{"algorithm": "RTN", "model": {"source": "m"}, "pad": [0')
            chunk = ",0" * 4096
            while f.tell() < (16 << 20) - 8200:
                f.write(chunk)
            f.write("]}")
        before = vmhwm(srv.pid)
        times, errors = [], []
        many = f"{url}/compare?ids=" + ",".join([ids[1]] * 50)
        peak = [before]
        done = threading.Event()

        def sample():  # VmHWM is gone with the process: keep the last value seen
            while not done.is_set():
                try:
                    peak[0] = max(peak[0], vmhwm(srv.pid))
                except OSError:
                    return
                time.sleep(0.05)

        def one():
            try:
                times.append(get(many)[0])
            except Exception as e:  # noqa: BLE001 (a dead server is a result here)
                errors.append(type(e).__name__)

        sampler = threading.Thread(target=sample)
        sampler.start()
        ts = [threading.Thread(target=one) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        done.set()
        sampler.join()
        alive = srv.poll() is None
        print(f"/compare of a 16 MiB report.json x50 ids, 4 at once: peak RSS {before / 2**20:.0f} -> "
              f"{peak[0] / 2**20:.0f} MiB; answered {len(times)} ({', '.join(ms(t) for t in sorted(times))}), "
              f"failed {len(errors)} {sorted(set(errors))}; server "
              + ("alive" if alive else f"exited with {srv.returncode}"))
    finally:
        srv.kill()
        srv.wait()
        subprocess.run(["pkill", "-f", sleeper])
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    sys.exit(main())
