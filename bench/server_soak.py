#!/usr/bin/env python3
"""Soak: clients submit and poll while the server is killed with SIGKILL and
restarted on the same port at a fixed interval, with real workers running
RTN on a small random Llama.

Each client submits a job, polls it until it is terminal (retrying through
the outages), and submits the next. At the end the server runs until every
job is terminal, and the script prints one table:

  acknowledged jobs lost   ids that got a 201 but are not in GET /jobs
  stuck RUNNING            jobs RUNNING/CANCELLING with no live worker after settling
  integrity_check          SQLite's PRAGMA integrity_check of qjobs.db
  RSS                      the server's resident memory, per life (min/max of 1 s samples)

Usage: bench/server_soak.py [--minutes 5] [--clients 16] [--kill-every 20] [--slots 2]
Not a test: CI does not run it. Needs build/bin (scripts/build.sh).
"""
import argparse
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "build", "bin")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class Server:
    def __init__(self, user_data, port, slots, log):
        self.args = [os.path.join(BIN, "qjobs-server"), "--listen", f"127.0.0.1:{port}", "--user-data", user_data,
                     "--slots", str(slots), "--log-level", "warn"]
        self.log = log
        self.proc = None
        self.lives = []  # [(start time, [rss samples])]
        self.sqlite = []  # [(life number, KiB SQLite holds)]

    def start(self):
        t0 = time.time()
        out = open(self.log + ".out", "a")
        self.proc = subprocess.Popen(self.args, stdout=out, stderr=open(self.log + ".err", "a"))
        self.lives.append((t0, []))
        # Ready when /healthz answers.
        while time.time() - t0 < 20:
            try:
                urllib.request.urlopen(self.url() + "/healthz", timeout=1).read()
                return time.time() - t0
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("server exited at start: see " + self.log + ".err")
                time.sleep(0.02)
        raise RuntimeError("server did not start")

    def url(self):
        return "http://" + self.args[2]

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def sample(self):
        if self.proc and self.proc.poll() is None:
            r = rss_kib(self.proc.pid)
            if r:
                self.lives[-1][1].append(r)
            try:
                text = urllib.request.urlopen(self.url() + "/metrics", timeout=2).read().decode()
                for line in text.splitlines():
                    if line.startswith("qjobs_sqlite_memory_bytes "):
                        self.sqlite.append((len(self.lives), int(line.split()[1]) // 1024))
            except OSError:
                pass


def request(method, url, body=None, timeout=10):
    req = urllib.request.Request(url, data=body.encode() if body else None, method=method)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, json.loads(r.read() or b"null")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=5)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--kill-every", type=float, default=20)
    ap.add_argument("--slots", type=int, default=2)
    a = ap.parse_args()

    work = tempfile.mkdtemp(prefix="qjobs-soak.")
    model = os.path.join(work, "model")
    subprocess.run([os.path.join(BIN, "qjobs-worker"), "init-model", "--out", model, "--hidden", "64",
                    "--intermediate", "128", "--layers", "1", "--vocab", "128"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    spec = f'MODEL: "{model}"\nALGORITHM: RTN\nllm:\n  RTN:\n    W_BIT: 4\n    Q_GROUP_SIZE: 32\n'
    ud = os.path.join(work, "ud")
    server = Server(ud, free_port(), a.slots, os.path.join(work, "server"))
    server.start()

    acked, lock = [], threading.Lock()
    stats = {"submit_errors": 0, "poll_errors": 0, "finished": 0, "refused": 0}
    deadline = time.time() + a.minutes * 60
    stop = threading.Event()

    def client():
        while time.time() < deadline:
            try:
                status, body = request("POST", server.url() + "/jobs", spec)
            except urllib.error.HTTPError as e:
                with lock:
                    stats["refused"] += 1
                time.sleep(0.2)
                continue
            except OSError:
                with lock:
                    stats["submit_errors"] += 1
                time.sleep(0.2)
                continue
            with lock:
                acked.append(body["id"])
            while not stop.is_set():
                try:
                    _, job = request("GET", server.url() + "/jobs/" + body["id"])
                    if job["state"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
                        with lock:
                            stats["finished"] += 1
                        break
                except (OSError, ValueError):
                    with lock:
                        stats["poll_errors"] += 1
                time.sleep(0.2)
            if time.time() >= deadline:
                break

    load_over = threading.Event()

    def sampler():
        # RSS under load only: the settle phase lists every job at once.
        while not load_over.is_set():
            server.sample()
            time.sleep(1)

    threads = [threading.Thread(target=client) for _ in range(a.clients)]
    for t in threads:
        t.start()
    threading.Thread(target=sampler, daemon=True).start()
    restarts = []
    next_kill = time.time() + a.kill_every
    while time.time() < deadline:
        time.sleep(0.2)
        if time.time() >= next_kill:
            server.kill9()
            restarts.append(server.start())
            next_kill = time.time() + a.kill_every
    load_over.set()
    for t in threads:
        t.join(timeout=120)
    stop.set()

    # Settle: every job terminal (the queue holds at most one job per client).
    settle_start = time.time()
    states = {}
    while time.time() - settle_start < 300:
        states, cursor = {}, ""
        while True:
            _, page = request("GET", server.url() + "/jobs?limit=1000" + (f"&cursor={cursor}" if cursor else ""))
            for j in page["jobs"]:
                states[j["id"]] = j["state"]
            cursor = page["next_cursor"]
            if not cursor:
                break
        if all(s in ("SUCCEEDED", "FAILED", "CANCELLED") for s in states.values()):
            break
        time.sleep(1)
    _, health = request("GET", server.url() + "/healthz")
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait()

    lost = [i for i in acked if i not in states]
    stuck = [i for i, s in states.items() if s in ("RUNNING", "CANCELLING")]
    by_state = {}
    for s in states.values():
        by_state[s] = by_state.get(s, 0) + 1
    db = sqlite3.connect(f"file:{ud}/qjobs.db?mode=ro", uri=True)
    integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    lives = [l for l in server.lives if l[1]]
    first = lives[0][1] if lives else [0]
    last = lives[-1][1] if lives else [0]

    print(f"| measure | value |\n|---|---|")
    print(f"| duration | {a.minutes:g} min, {a.clients} clients, SIGKILL every {a.kill_every:g} s, {a.slots} slots |")
    print(f"| server kills / restarts | {len(restarts)} |")
    print(f"| restart to healthy (s): median / max | {sorted(restarts)[len(restarts) // 2]:.2f} / {max(restarts):.2f} |"
          if restarts else "| restart to healthy | - |")
    print(f"| acknowledged jobs (201) | {len(acked)} |")
    print(f"| acknowledged jobs lost | {len(lost)} |")
    print(f"| jobs by state after settling | {json.dumps(by_state, sort_keys=True)} |")
    print(f"| stuck RUNNING | {len(stuck)} |")
    print(f"| settle time after the last client (s) | {time.time() - settle_start:.0f} |")
    print(f"| integrity_check | {integrity} |")
    print(f"| healthz at the end | {health['status']} |")
    print(f"| submissions refused (HTTP error) / connection errors | {stats['refused']} / {stats['submit_errors']} |")
    longest = max(lives, key=lambda l: len(l[1]))[1] if lives else [0]
    quarters = [longest[min(len(longest) - 1, (len(longest) * q) // 4)] / 1024 for q in range(5)]
    print(f"| RSS under load, first life min/max (MiB) | {min(first) / 1024:.1f} / {max(first) / 1024:.1f} |")
    print(f"| RSS under load, last life min/max (MiB) | {min(last) / 1024:.1f} / {max(last) / 1024:.1f} |")
    print(f"| RSS under load, max over all lives (MiB) | {max(max(l[1]) for l in lives) / 1024:.1f} |")
    print(f"| RSS over the longest life ({len(longest)} s) at 0/25/50/75/100% (MiB) | "
          + " / ".join(f"{q:.1f}" for q in quarters) + " |")
    longest_n = max(range(len(server.lives)), key=lambda i: len(server.lives[i][1])) + 1
    sq = [kib for life, kib in server.sqlite if life == longest_n]
    if sq:
        sq_q = [sq[min(len(sq) - 1, (len(sq) * q) // 4)] / 1024 for q in range(5)]
        print(f"| SQLite memory over that life at 0/25/50/75/100% (MiB) | " + " / ".join(f"{q:.1f}" for q in sq_q) + " |")
    print(f"(work folder: {work})")
    return 0 if not lost and not stuck and integrity == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
