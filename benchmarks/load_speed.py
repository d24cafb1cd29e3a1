"""How fast datasets load, and at what memory cost.

    python benchmarks/load_speed.py                 # ml-100k, ml1m-dbpedia (cached) + synthetic 20M rows / 1M triples
    python benchmarks/load_speed.py --skip-large    # ml-100k and ml1m-dbpedia only
    python benchmarks/load_speed.py --rows 2000000  # a smaller large case

Each load runs in a fresh subprocess, so the peak RSS printed is that load's alone
(``resource.getrusage(RUSAGE_SELF).ru_maxrss`` inside the child, imports included). Targets:
ml-100k well under a second; ml1m-dbpedia (932k interactions, 193k triples) under 2 s from the
cache (when it is not cached yet, it is fetched first into a temporary cache from
``$KTUP_ML1M_DBPEDIA_BASE_URL`` or the shared sources mirror, and that time is printed too); 20M-row ``.inter`` + 1M-triple ``.kg`` under 30 s and 4 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from ktup.config import DataConfig
from ktup.data import load_dataset
t1 = time.perf_counter()
cfg = DataConfig(**json.loads(sys.argv[1]))
times = []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter()
    ds = load_dataset(cfg)
    times.append(time.perf_counter() - t)
print(json.dumps({"import_s": t1 - t0, "load_s": times, "info": ds.info(),
                  "split": [len(ds.train), len(ds.valid), len(ds.test)],
                  "kg_split": [len(ds.kg_train), len(ds.kg_valid), len(ds.kg_test)],
                  "cpu_s": (lambda u: u.ru_utime + u.ru_stime)(resource.getrusage(resource.RUSAGE_SELF)),
                  "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def run_child(cfg: dict, repeat: int, env: dict | None = None) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cfg), str(repeat)], capture_output=True, text=True,
                          env=None if env is None else {**os.environ, **env})
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def write_recbole(raw, d: Path) -> float:
    """Write a RawData as RecBole atomic files (integer tokens), fast (pyarrow's CSV writer)."""
    import numpy as np

    t = time.perf_counter()
    d.mkdir(parents=True, exist_ok=True)
    try:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        def write(path, header, cols):
            with open(path, "wb") as f:
                f.write(("\t".join(header) + "\n").encode())
                pacsv.write_csv(pa.table({f"c{k}": c for k, c in enumerate(cols)}), f,
                                pacsv.WriteOptions(include_header=False, delimiter="\t"))
    except ImportError:  # pragma: no cover
        import pandas as pd

        def write(path, header, cols):
            pd.DataFrame({h: c for h, c in zip(header, cols)}).to_csv(path, sep="\t", index=False)

    name = d.name
    write(d / f"{name}.inter", ["user_id:token", "item_id:token", "rating:float", "timestamp:float"],
          [raw.users + 1, raw.items + 1, raw.ratings.astype(np.int8), raw.timestamps.astype(np.int64)])
    tri = raw.triples
    write(d / f"{name}.kg", ["head_id:token", "relation_id:token", "tail_id:token"],
          [tri[:, 0] + 1_000_000, tri[:, 1], tri[:, 2] + 1_000_000])   # entity tokens: 1000000 + code
    write(d / f"{name}.link", ["item_id:token", "entity_id:token"], [raw.link_items + 1, raw.link_entities + 1_000_000])
    return time.perf_counter() - t


def ml1m(repeat: int) -> None:
    """ml1m-dbpedia from the cache; fetched (and timed) into a temporary cache when not cached."""
    from ktup.data import pearlm, registry

    if (registry.cache_root() / "ml1m-dbpedia").is_dir():
        env, tmp = {}, None
    else:
        base = os.environ.get(pearlm.BASE_URL_ENV)
        shared = registry.shared_root()
        if base is None and shared is not None and (shared / "sources" / "pearlm-ml1m").is_dir():
            base = (shared / "sources" / "pearlm-ml1m").as_uri()
        if base is None:
            print(f"ml1m-dbpedia: not cached and no mirror ({pearlm.BASE_URL_ENV} unset): skipped")
            return
        tmp = tempfile.TemporaryDirectory(prefix="ktup-bench-cache-")
        env = {"KTUP_CACHE_DIR": tmp.name}
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "ktup", "datasets", "fetch", "ml1m-dbpedia", "--base-url", base],
                              capture_output=True, text=True, env={**os.environ, **env})
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)
        print(f"ml1m-dbpedia: fetched from {base} (download + sha256 + convert) in {time.perf_counter() - t:.1f} s")
    try:
        r = run_child({"dataset": "ml1m-dbpedia"}, repeat, env)
    finally:
        if tmp is not None:
            tmp.cleanup()
    print(f"ml1m-dbpedia (cache, published temporal split, KG 90/5/5): load {min(r['load_s']):.3f} s best of {repeat} "
          f"(first {r['load_s'][0]:.3f} s; import {r['import_s']:.2f} s), peak RSS {r['peak_rss_gb']:.2f} GB, "
          f"split {r['split']}, kg {r['kg_split']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-large", action="store_true")
    ap.add_argument("--rows", type=int, default=20_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (timings scale with contention)")
    r = run_child({"dataset": "ml-100k"}, args.repeat)
    best = min(r["load_s"])
    print(f"ml-100k (drop_unlinked, random 8:1:1, KG 90/5/5): load {best:.3f} s best of {args.repeat} "
          f"(first {r['load_s'][0]:.3f} s; import {r['import_s']:.2f} s), peak RSS {r['peak_rss_gb']:.2f} GB, "
          f"split {r['split']}, kg {r['kg_split']}")
    ml1m(args.repeat)
    if args.skip_large:
        return

    from ktup.data.synthetic import PRESETS, generate_raw

    preset = dict(PRESETS["synthetic-ml20m"])
    preset["n_interactions"] = args.rows
    t = time.perf_counter()
    c = time.process_time()
    raw = generate_raw(**preset)
    gen_s, gen_cpu = time.perf_counter() - t, time.process_time() - c
    print(f"synthetic generate_raw: {raw.users.size:,} interactions, {raw.triples.shape[0]:,} triples in {gen_s:.1f} s wall, {gen_cpu:.1f} s CPU")
    with tempfile.TemporaryDirectory(prefix="ktup-bench-") as tmp:
        d = Path(tmp) / "big"
        w = write_recbole(raw, d)
        del raw
        size = sum(p.stat().st_size for p in d.iterdir()) / 2**20
        print(f"wrote RecBole files ({size:,.0f} MiB) in {w:.1f} s")
        r = run_child({"dataset": str(d), "drop_unlinked": False}, 1)
        print(f"large RecBole load (read + dedup + ids + random split + KG split): {r['load_s'][0]:.1f} s wall, "
              f"{r['cpu_s']:.1f} s CPU (whole process), load average {os.getloadavg()[0]:.1f}, "
              f"peak RSS {r['peak_rss_gb']:.2f} GB; {r['info']['interactions']:,} interactions, "
              f"{r['info']['users']:,} users, {r['info']['items']:,} items, {r['info']['triples']:,} triples")


if __name__ == "__main__":
    main()
