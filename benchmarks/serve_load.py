"""How fast does ``ktup serve`` answer? Load test on 127.0.0.1 at several concurrency levels.

    python benchmarks/serve_load.py [--run RUN_DIR | --out NEW_RUN_DIR] [--epochs 1] [--levels 1,4,16]
                                    [--requests 400] [--time-limit 20] [--k 10] [--threads N]

Takes a run directory (or export folder) or trains a ktup run on ml-100k (``--epochs``, into a
temporary folder; speed does not depend on how well it is trained), starts ``python -m ktup
serve`` in a subprocess on a free loopback port (so the load generator does not share the
server's GIL), and drives it with a bounded number of requests and a time limit per level from
N client threads, each with its own keep-alive connection. For recommendations without and with
explanations (and a batched POST of ``--batch-users`` users) it prints throughput, p50/p95/p99
latency and the number of failed requests, which must be 0 (the exit status is 1 otherwise).
Only loopback addresses are used.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def train_run(epochs: int, out: Path) -> Path:
    from ktup.config import Config
    from ktup.training import train

    cfg = Config.from_dict({"data": {"dataset": "ml-100k"}, "model": {"model": "ktup"},
                            "train": {"epochs": epochs, "patience": 0}, "eval": {"kg_eval": False}})
    t = time.perf_counter()
    run = train(cfg, out=str(out), progress="quiet")
    print(f"trained ktup on ml-100k for {epochs} epoch(s) in {time.perf_counter() - t:.1f} s: {run.path}")
    return Path(run.path)


def user_tokens(path: Path) -> list[str]:
    if (path / "split.npz").exists():
        with np.load(path / "split.npz", allow_pickle=False) as z:
            return [str(t) for t in z["users_tokens"].tolist()]
    return [str(t) for t in json.loads((path / "catalogue.json").read_text())["users"]]


def start_server(path: Path, port: int, threads: int | None, workers: int) -> subprocess.Popen:
    import httpx

    cmd = [sys.executable, "-m", "ktup", "serve", str(path), "--host", HOST, "--port", str(port),
           "--log-level", "warning", "--workers", str(workers), "--max-batch", "1000"]
    if threads:
        cmd += ["--threads", str(threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"http://{HOST}:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            sys.exit("serve_load: the server did not start:\n" + proc.communicate()[0].decode(errors="replace"))
        time.sleep(0.2)


def drive(base: str, make_request, concurrency: int, max_requests: int, time_limit: float):
    """Run up to ``max_requests`` requests from ``concurrency`` threads, stopping at ``time_limit``.

    Returns (latencies in s of successful requests, failures, wall time)."""
    import httpx

    lock = threading.Lock()
    issued = [0]
    latencies: list[float] = []
    failures: list[str] = []
    stop_at = time.perf_counter() + time_limit

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=base, timeout=60) as client:
            while True:
                with lock:
                    if issued[0] >= max_requests or time.perf_counter() > stop_at:
                        return
                    issued[0] += 1
                t = time.perf_counter()
                try:
                    r = make_request(client, rng)
                    ok = r.status_code == 200
                    err = None if ok else f"HTTP {r.status_code}: {r.text[:120]}"
                except httpx.HTTPError as e:
                    ok, err = False, f"{type(e).__name__}: {e}"
                dt = time.perf_counter() - t
                with lock:
                    (latencies.append(dt) if ok else failures.append(err))

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, range(concurrency)))
    return latencies, failures, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, help="run directory or export folder (default: train ktup on ml-100k)")
    ap.add_argument("--epochs", type=int, default=1, help="epochs when training (default: 1)")
    ap.add_argument("--out", type=Path, help="keep the trained run here (default: a temporary folder, removed)")
    ap.add_argument("--levels", default="1,4,16", help="client concurrency levels (default: 1,4,16)")
    ap.add_argument("--requests", type=int, default=400, help="most requests per level and mode (default: 400)")
    ap.add_argument("--time-limit", type=float, default=20.0, help="seconds per level and mode (default: 20)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--batch-users", type=int, default=100, help="users per POST /recommendations (0: skip)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads in the server (ktup serve --threads)")
    ap.add_argument("--workers", type=int, default=1, help="server worker processes (ktup serve --workers)")
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",") if x.strip()]

    tmp = None
    if args.run is None and args.out is not None:
        args.run = train_run(args.epochs, args.out)
    elif args.run is None:
        tmp = tempfile.TemporaryDirectory(prefix="ktup-serve-load-")
        args.run = train_run(args.epochs, Path(tmp.name) / "run")
    users = user_tokens(args.run)
    port = free_port()
    proc = start_server(args.run, port, args.threads, args.workers)
    base = f"http://{HOST}:{port}"
    k = args.k

    def plain(client, rng):
        return client.get(f"/users/{rng.choice(users)}/recommendations", params={"k": k})

    def explained(client, rng):
        return client.get(f"/users/{rng.choice(users)}/recommendations", params={"k": k, "explain": "true"})

    def batch(client, rng):
        return client.post("/recommendations", json={"users": rng.sample(users, args.batch_users), "k": k})

    modes = [("recommend", plain), ("recommend+explain", explained)]
    if args.batch_users:
        modes.append((f"batch of {args.batch_users} users", batch))
    total_failed = 0
    try:
        import httpx

        health = httpx.get(base + "/health", timeout=10).json()
        print(f"serving {health['model']} on {health['dataset']} ({health['users']} users, {health['items']} items) "
              f"at {base}; k={k}; {args.workers} worker(s), torch threads: {args.threads or 'default'}; "
              f"{os.cpu_count()} cores on this machine")
        print(f"{'mode':<24}{'clients':>8}{'requests':>10}{'failed':>8}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
        for name, make in modes:
            drive(base, make, 1, 5, 30.0)  # warm-up (first explanation builds the KG evidence index)
            for c in levels:
                lat, failed, wall = drive(base, make, c, args.requests, args.time_limit)
                total_failed += len(failed)
                p = np.percentile(np.array(lat) * 1000, [50, 95, 99]) if lat else [float("nan")] * 3
                print(f"{name:<24}{c:>8}{len(lat) + len(failed):>10}{len(failed):>8}{len(lat) / wall:>9.1f}"
                      f"{p[0]:>9.1f}{p[1]:>9.1f}{p[2]:>9.1f}", flush=True)
                for f in failed[:3]:
                    print(f"    failure: {f}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        if tmp is not None:
            tmp.cleanup()
    print(f"failed requests: {total_failed}")
    return 1 if total_failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
