"""The reliability battery: bad input, fuzzing, damaged checkpoints, diverging training, an
unwritable or full disk, SIGKILLed runs, a hammered HTTP service and the security cases of
``reliability_security.py`` (hostile checkpoints, chunked bodies, heavy requests, slow clients,
ids with '/') — one summary table.

    python benchmarks/reliability.py                     # everything (~2-4 min on 2 busy cores)
    python benchmarks/reliability.py --kills 12 --fuzz 1000 --http-rounds 10 --json out.json

Each category reports the cases tried, how they ended, and whether anything was lost (a run
directory or export left half-made, a checkpoint destroyed, a crashed server, a result that a
resume did not reproduce). The cases are the test corpus (``tests/reliability/``); the CI-sized
checks live in ``tests/test_reliability_*.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))    # first: tests/reliability/ (the corpus), not this file

import torch  # noqa: E402

from ktup.cli import main as ktup_main  # noqa: E402


def cli(*argv: str) -> tuple[int, str, str]:
    """``ktup ARGV`` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = ktup_main(list(argv))
        except SystemExit as e:
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def one_line(err: str) -> bool:
    lines = [x for x in err.splitlines() if x.strip()]
    return len(lines) == 1 and lines[0].startswith("ktup: error: ") and "Traceback" not in err


class Tally:
    def __init__(self, name: str):
        self.name, self.tried, self.outcomes, self.failures, self.lost = name, 0, Counter(), [], 0

    def add(self, outcome: str, ok: bool, why: str = "", lost: bool = False) -> None:
        self.tried += 1
        self.outcomes[outcome] += 1
        self.lost += bool(lost)
        if not ok:
            self.failures.append(why or outcome)

    def row(self) -> dict[str, Any]:
        return {"category": self.name, "tried": self.tried,
                "outcomes": ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items())),
                "as_expected": self.tried - len(self.failures), "lost": self.lost, "failures": self.failures[:5]}


# ------------------------------------------------------------------ categories
def datasets(tmp: Path) -> Tally:
    from ktup.config import DataConfig
    from ktup.data import load_dataset
    from ktup.errors import KtupError
    from reliability.corpus import CASES, write_files

    t = Tally("bad datasets (3 layouts)")
    tiny = ["--set", "epochs=1", "--set", "embedding_size=8", "--quiet"]
    for c in CASES:
        d = write_files(tmp / c.id / "toy", c.files())
        kw = {"drop_unlinked": False, **c.data}
        if c.expect == "ok":
            try:
                c.check(load_dataset(DataConfig(dataset=str(d), **kw)))
                t.add("loaded as it should", True)
            except (KtupError, AssertionError) as e:
                t.add("wrongly refused", False, f"{c.id}: {e}")
            continue
        out = tmp / c.id / "run"
        sets = ["--set", "drop_unlinked=false", *[f"--set={k}={v}" for k, v in c.data.items()]]
        rc, _, err = cli("train", "--dataset", str(d), "--out", str(out), *sets, *tiny)
        good = rc == 2 and one_line(err) and c.fragment in err
        lost = out.exists()
        t.add("one-line error, exit 2" if good else "WRONG", good and not lost, f"{c.id}: rc={rc} {err.strip()[:120]}", lost)
    return t


def configs(tmp: Path) -> Tally:
    from reliability.corpus import SET_CASES, YAML_CASES

    t = Tally("bad configs (YAML, --set)")
    for name, text, frag in YAML_CASES:
        f = tmp / f"{name}.yaml"
        f.write_bytes(text if isinstance(text, bytes) else text.encode())
        out = tmp / f"run-{name}"
        rc, _, err = cli("train", "--config", str(f), "--dataset", "synthetic-tiny", "--out", str(out))
        ok = rc == 2 and one_line(err) and frag in err
        t.add("one-line error, exit 2" if ok else "WRONG", ok and not out.exists(), f"yaml {name}: {err.strip()[:120]}", out.exists())
    for name, item, frag in SET_CASES:
        out = tmp / f"run-set-{name}"
        rc, _, err = cli("train", "--dataset", "synthetic-tiny", "--out", str(out), "--set", item)
        ok = rc == 2 and one_line(err) and frag in err
        t.add("one-line error, exit 2" if ok else "WRONG", ok and not out.exists(), f"--set {name}: {err.strip()[:120]}", out.exists())
    return t


def _tiny_run(tmp: Path, epochs: int = 3) -> Path:
    out = tmp / "tiny-run"
    if not (out / "final.json").exists():
        rc, _, err = cli("train", "--dataset", "synthetic-tiny", "--out", str(out), "--quiet", "--set", f"epochs={epochs}",
                         "--set", "embedding_size=16", "--set", "batch_size=64", "--set", "kg_batch_size=64",
                         "--set", "patience=0", "--set", "kg_eval_max_triples=100", "--set", "lr=0.01")
        assert rc == 0, err
    return out


def commands(tmp: Path, run: Path) -> Tally:
    from reliability.corpus import cli_cases, fill_ids

    t = Tally("bad commands (CLI)")
    for name, argv, frag in cli_cases(run, tmp):
        rc, _, err = cli(*fill_ids(argv, run))
        ok = rc == 2 and one_line(err) and frag in err
        lost = (tmp / "r").exists() or (tmp / "exp").exists()
        t.add("one-line error, exit 2" if ok else "WRONG", ok and not lost, f"{name}: rc={rc} {err.strip()[:120]}", lost)
    # export from a damaged run: nothing written
    bad = tmp / "damaged-run"
    shutil.copytree(run, bad)
    best = bad / "checkpoints" / "best.pt"
    best.write_bytes(best.read_bytes()[:-64])
    rc, _, err = cli("export", str(bad), "--to", str(tmp / "exp2"))
    ok = rc == 2 and one_line(err) and "checksum" in err
    t.add("one-line error, exit 2" if ok else "WRONG", ok and not (tmp / "exp2").exists(), f"export damaged: {err[:120]}",
          (tmp / "exp2").exists())
    return t


def fuzz(n: int, seed: int) -> Tally:
    from ktup.config import DataConfig
    from ktup.data import load_dataset
    from reliability.corpus import VALID, write_files
    from reliability.mutations import apply, outcome, random_mutation

    t = Tally(f"fuzzed dataset files (seed {seed})")
    rng = random.Random(seed)
    valid = {f: VALID[f]() for f in VALID}
    for _ in range(n):
        fmt = rng.choice(sorted(valid))
        files = dict(valid[fmt])
        muts = [random_mutation(rng) for _ in range(rng.randrange(1, 4))]
        for m in muts:
            files = apply(files, *m)
        d = Path(tempfile.mkdtemp(prefix="ktup-fuzz-"))
        try:
            write_files(d / "toy", files)
            res, msg = outcome(lambda: load_dataset(DataConfig(dataset=str(d / "toy"), drop_unlinked=False)))
        finally:
            shutil.rmtree(d, ignore_errors=True)
        t.add(res, res != "CRASH", f"{fmt} {muts}: {msg}")
    return t


def _final(run: Path) -> dict:
    f = json.loads((run / "final.json").read_text())
    return {k: f.get(k) for k in ("test", "kg_test", "best_epoch", "epochs", "steps")}


def checkpoints(tmp: Path, run: Path) -> Tally:
    t = Tally("damaged checkpoints -> resume")
    damage: dict[str, Callable[[bytes], bytes]] = {
        "truncated": lambda b: b[: len(b) // 2], "flipped byte": lambda b: b[:-9] + bytes([b[-9] ^ 1]) + b[-8:],
        "empty": lambda b: b"", "garbage": lambda b: os.urandom(len(b)), "header only": lambda b: b[:40]}
    ref = _final(run)
    for files in (("last.pt",), ("last.pt", "prev.pt")):
        for name, fn in damage.items():
            d = tmp / f"ck-{name}-{len(files)}".replace(" ", "-")
            shutil.copytree(run, d)
            info = json.loads((d / "run.json").read_text())
            (d / "run.json").write_text(json.dumps({**info, "status": "running"}))   # as if killed before the end
            (d / "final.json").unlink()
            for f in files:
                p = d / "checkpoints" / f
                p.write_bytes(fn(p.read_bytes()))
            rc, _, err = cli("train", "--resume", str(d), "--quiet")
            said = "resuming from" in err
            same = rc == 0 and _final(d) == ref
            t.add("fell back and reproduced" if same and said else "WRONG", same and said,
                  f"{'+'.join(files)} {name}: rc={rc} {err.strip()[:150]}", lost=not same)
    d = tmp / "ck-all"
    shutil.copytree(run, d)
    for p in (d / "checkpoints").glob("*.pt"):
        p.write_bytes(p.read_bytes()[:50])
    rc, _, err = cli("train", "--resume", str(d), "--quiet")
    ok = rc == 2 and one_line(err) and "no intact checkpoint" in err
    t.add("all damaged: one-line error" if ok else "WRONG", ok, err[:150])
    return t


def numerics(tmp: Path) -> Tally:
    from ktup.runs.checkpoint import load_checkpoint

    t = Tally("non-finite training")
    for name, sets in (("lr=1e38 sgd", ["lr=1e38", "optimizer=sgd"]), ("lr=1e30 adam", ["lr=1e30"]),
                       ("lr=1e20 sgd", ["lr=1e20", "optimizer=sgd"])):
        out = tmp / f"nan-{name.replace(' ', '-').replace('=', '')}"
        args = [x for s in ["epochs=4", "embedding_size=8", "batch_size=64", "kg_batch_size=64", *sets] for x in ("--set", s)]
        rc, _, err = cli("train", "--dataset", "synthetic-tiny", "--out", str(out), "--quiet", *args)
        nan_kept = False
        for f in (out / "checkpoints").glob("*.pt"):
            st = load_checkpoint(f)["model"]
            nan_kept |= not all(bool(torch.isfinite(v).all()) for v in st.values() if v.is_floating_point())
        if rc == 0:
            t.add("trained (stayed finite)", not nan_kept, f"{name}: NaN weights in a checkpoint", nan_kept)
            continue
        ok = rc == 2 and one_line(err) and "non-finite" in err and "step" in err
        t.add("stopped: one line naming step" if ok else "WRONG", ok and not nan_kept, f"{name}: {err.strip()[:150]}", nan_kept)
    return t


def disks(tmp: Path, run: Path) -> Tally:
    import ktup.runs.checkpoint as ck
    from ktup.runs.checkpoint import load_checkpoint

    t = Tally("unwritable / full disk")
    blocker = tmp / "a-file"
    blocker.write_text("x")
    for where in (blocker / "run", Path("/proc/ktup-run"), Path("/dev/null/run")):
        rc, _, err = cli("train", "--dataset", "synthetic-tiny", "--out", str(where), "--quiet", "--set", "epochs=1")
        ok = rc == 2 and one_line(err) and "not writable" in err
        t.add("refused before training" if ok else "WRONG", ok, f"{where}: {err.strip()[:150]}")
    for fail_from in (1, 2, 3):
        out = tmp / f"full-{fail_from}"
        real_open = open
        n = {"k": 0}

        def fake_open(file, mode="r", *a, **k):
            f = real_open(file, mode, *a, **k)
            if "w" in mode and ".tmp-" in str(file) and "checkpoints" in str(file):
                n["k"] += 1
                if n["k"] >= fail_from:
                    w = f.write

                    def write(data):
                        w(data[: len(data) // 2])
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                    f.write = write
            return f

        ck.open = fake_open
        try:
            rc, _, err = cli("train", "--dataset", "synthetic-tiny", "--out", str(out), "--quiet", "--set", "epochs=3",
                             "--set", "embedding_size=16", "--set", "batch_size=64", "--set", "kg_batch_size=64",
                             "--set", "patience=0", "--set", "kg_eval_max_triples=100", "--set", "lr=0.01")
        finally:
            del ck.open
        ok = rc == 2 and one_line(err) and "No space left on device" in err
        survived = True
        for f in (out / "checkpoints").glob("*.pt"):
            try:
                load_checkpoint(f)
            except Exception:  # noqa: BLE001
                survived = False
        temps = list((out / "checkpoints").glob(".*.tmp-*"))
        rc2, _, err2 = cli("train", "--resume", str(out), "--quiet")     # space freed: finish the run
        same = rc2 == 0 and _final(out) == _final(run)
        t.add("clear error, resumed to same result" if ok and same else "WRONG", ok and survived and not temps and same,
              f"ENOSPC at write {fail_from}: {err.strip()[:120]} / resume rc={rc2} {err2.strip()[:120]}",
              lost=not survived or not same)
    return t


def kills(n: int, seed: int, tmp: Path) -> tuple[Tally, list[dict]]:
    import kill_trials

    t = Tally("SIGKILL during training")
    rows = kill_trials.run_trials(n, seed, tmp / "kills")
    for r in rows:
        t.add(r["killed_in"].split(":")[-1].strip().split(" (")[0].replace("training or validation", "in an epoch"),
              bool(r["same_result"]),
              f"trial {r['trial']}: {r['resume']} {r['detail']}", lost=not r["same_result"])
    return t, rows


def http(run: Path, rounds: int) -> tuple[Tally, dict]:
    from ktup.explain import Recommender
    from reliability.http_battery import serve_and_battery

    t = Tally("HTTP load + malformed requests")
    res = serve_and_battery(Recommender.load(run), rounds=rounds, threads=8, deadline_s=300)
    for k, v in res["counts"].items():
        for _ in range(v):
            t.outcomes[k] += 1
    t.tried = res["requests"]
    t.failures = list(res["problems"])
    t.lost = 0 if res["alive"] else 1
    return t, res


# ------------------------------------------------------------------ issue 17: data and runs (items 5-9)
# (Config cases of item 9 — NaN, ±inf, margin <= 0 — are in the corpus and reported under "bad configs";
# the corpus' BOM and repeated-header cases under "bad datasets".)
def _strict_json(text: str):
    def bad(name):
        raise ValueError(f"bare {name} in JSON")
    return json.loads(text, parse_constant=bad)


def run_lock(tmp: Path, run: Path) -> Tally:
    """Item 5: two real writers on one run directory; a killed holder leaves no stale lock."""
    import subprocess

    from ktup.runs.lock import LOCK_NAME

    t = Tally("one writer per run (real processes)")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    d = tmp / "locked-run"
    shutil.copytree(run, d)
    a = subprocess.Popen([sys.executable, "-m", "ktup", "train", "--resume", str(d), "--quiet", "--set", "epochs=100000"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 120 and a.poll() is None:
            if (d / LOCK_NAME).exists() and (d / LOCK_NAME).read_text().strip() == str(a.pid):
                break
            time.sleep(0.05)
        b = subprocess.run([sys.executable, "-m", "ktup", "train", "--resume", str(d), "--quiet", "--set", "epochs=5"],
                           capture_output=True, text=True, env=env, timeout=300)
        ok = b.returncode == 2 and one_line(b.stderr) and f"(pid {a.pid}) is writing this run" in b.stderr and a.poll() is None
        t.add("second resume refused, pid named" if ok else "WRONG", ok, f"second resume: rc={b.returncode} {b.stderr.strip()[:150]}")
        n = subprocess.run([sys.executable, "-m", "ktup", "train", "--dataset", "synthetic-tiny", "--out", str(d), "--quiet"],
                           capture_output=True, text=True, env=env, timeout=300)
        ok = n.returncode == 2 and one_line(n.stderr)
        t.add("new run into it refused" if ok else "WRONG", ok, f"new run into a busy dir: rc={n.returncode} {n.stderr.strip()[:150]}")
    finally:
        a.kill()
        a.wait(timeout=60)
    done = json.loads((d / "run.json").read_text()).get("epochs_done", 0)
    c = subprocess.run([sys.executable, "-m", "ktup", "train", "--resume", str(d), "--quiet", "--set", f"epochs={done + 2}"],
                       capture_output=True, text=True, env=env, timeout=600)
    lines = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    epochs = [r["epoch"] for r in lines if not r.get("final")]
    final, info = json.loads((d / "final.json").read_text()), json.loads((d / "run.json").read_text())
    ok = (c.returncode == 0 and sum(bool(r.get("final")) for r in lines) == 1 and epochs == list(range(1, len(epochs) + 1))
          and final["epochs"] == info["epochs_done"] == epochs[-1] and info["status"] == "finished")
    t.add("holder SIGKILLed: no stale lock, consistent run" if ok else "WRONG", ok,
          f"resume after kill: rc={c.returncode} {c.stderr.strip()[:150]}", lost=not ok)
    return t


def bom_and_headers(tmp: Path) -> Tally:
    """Items 6-7 over every file of every layout (KGCN included) and both table engines."""
    from ktup.config import DataConfig
    from ktup.data import load_dataset, tables
    from ktup.errors import DataError
    from reliability.corpus import BOM, VALID, write_files

    def kgcn():
        r = "".join(f"{u}\t{i}\t1\n" for u in range(8) for i in range(6) if (u + i) % 6 != 5)
        kg = "".join(f"{k}\t0\t{6 + k % 2}\n" for k in range(6)) + "".join(f"{k}\t1\t{8 + k % 3}\n" for k in range(6))
        return {"ratings_final.txt": r.encode(), "kg_final.txt": kg.encode()}

    t = Tally("BOM / repeated header (every reader, 2 engines)")
    layouts = {**VALID, "kgcn": kgcn}
    saved = tables.ENGINE
    try:
        for eng in (["arrow"] if tables.HAVE_ARROW else []) + ["pandas"]:
            tables.ENGINE = eng
            for fmt, fn in layouts.items():
                plain = load_dataset(DataConfig(dataset=str(write_files(tmp / eng / fmt / "a" / "toy", fn())), drop_unlinked=False))
                toks = lambda ds: [x for m in (ds.users, ds.items, ds.entities, ds.relations) for x in m.tokens]  # noqa: E731
                for name in fn():
                    files = fn()
                    files[name] = BOM + files[name]
                    d = write_files(tmp / eng / fmt / name.replace("/", "-") / "toy", files)
                    try:
                        ds = load_dataset(DataConfig(dataset=str(d), drop_unlinked=False))
                        ok = toks(ds) == toks(plain) and ds.n_interactions == plain.n_interactions
                        t.add("BOM dropped" if ok else "WRONG", ok, f"{eng} {fmt}/{name}: ids differ with a BOM")
                    except Exception as e:  # noqa: BLE001
                        t.add("WRONG", False, f"{eng} {fmt}/{name}: {e}")
            files = VALID["recbole"]()
            lines = files["toy.kg"].decode().split("\n")
            lines.insert(8, lines[0])
            files["toy.kg"] = "\n".join(lines).encode()
            try:
                load_dataset(DataConfig(dataset=str(write_files(tmp / eng / "hdr" / "toy", files)), drop_unlinked=False))
                t.add("WRONG", False, f"{eng}: repeated .kg header loaded as data")
            except DataError as e:
                ok = "toy.kg:9: header line repeated as data" in str(e)
                t.add("repeated header: file:line error" if ok else "WRONG", ok, f"{eng}: {e}")
    finally:
        tables.ENGINE = saved
    return t


def tie_policy(tmp: Path) -> Tally:
    """Item 8: a constant scorer scores like a random one; evaluate and recommend rank alike."""
    import numpy as np

    from ktup.data.synthetic import PRESETS, generate
    from ktup.evaluation import evaluate_recommendation
    from ktup.evaluation.ranking import top_k_items
    from ktup.explain import Recommender

    t = Tally("top-K tie policy")
    const = lambda u, i: torch.zeros(len(u), len(i))  # noqa: E731

    def rand(s):
        g = torch.Generator().manual_seed(1000 + s)
        return lambda u, i: torch.rand(len(u), len(i), generator=g)

    ml = Path(os.environ.get("KTUP_SHARED_DATASETS", ROOT.parent / "shared" / "datasets")) / "ml-100k"
    if ml.is_dir():
        from ktup.config import DataConfig
        from ktup.data import load_dataset

        ds = load_dataset(DataConfig(dataset=str(ml)))
        c = np.mean([evaluate_recommendation(const, ds, "test", ks=(10,), tie_seed=s).summary["ndcg@10"] for s in range(3)])
        r = np.mean([evaluate_recommendation(rand(s), ds, "test", ks=(10,)).summary["ndcg@10"] for s in range(3)])
        ok = 0.7 < c / r < 1.3
        t.add(f"ml-100k constant/random ndcg@10 {c:.4f}/{r:.4f}" if ok else "WRONG", ok, f"constant {c:.4f} vs random {r:.4f}")
    ds = generate(**PRESETS["synthetic-tiny"], name="synthetic-tiny")
    g = torch.Generator().manual_seed(0)
    table = torch.randint(0, 3, (ds.n_users, ds.n_items), generator=g).float()

    class Tied(torch.nn.Module):
        def score_all_items(self, u, items=None):
            return table[u] if items is None else table[u][:, items]

    model = Tied()
    users = np.arange(ds.n_users)
    seen = ds.seen_before("test").csr()
    a = top_k_items(model, users, 10, ds.n_items, seen=seen, tie_seed=3)[0]
    b = top_k_items(model, users, 10, ds.n_items, seen=seen, tie_seed=3, user_batch_size=7, memory_budget_mb=1)[0]
    t.add("same seed, any chunking: same lists" if torch.equal(a, b) else "WRONG", torch.equal(a, b), "tie lists depend on chunking")
    rec = Recommender(model, ds, seen_splits=("train", "valid"))
    same = np.array_equal(rec.top_k(users, k=10)[0], top_k_items(model, users, 10, ds.n_items, seen=seen)[0].numpy())
    t.add("recommend == evaluate's core" if same else "WRONG", same, "recommend and evaluate rank differently")
    return t


def run_edge_cases(tmp: Path) -> Tally:
    """Item 9: epochs=0, an empty test split in --json, a shape mismatch, repeated pairs' sparsity."""
    from reliability.corpus import VALID, write_files

    t = Tally("run edge cases (epochs=0, NaN JSON, shapes, sparsity)")
    tiny = ["--quiet", "--set", "embedding_size=8", "--set", "batch_size=64", "--set", "kg_batch_size=64",
            "--set", "kg_eval_max_triples=20"]
    zero = tmp / "epochs0"
    rc, _, err = cli("train", "--dataset", "synthetic-tiny", "--out", str(zero), "--set", "epochs=0", *tiny)
    rc2, out2, err2 = cli("evaluate", str(zero), "--json", "--no-kg")
    rc3, _, err3 = cli("recommend", str(zero), "--user", "u0", "-k", "3")
    ok = rc == 0 and rc2 == 0 and rc3 == 0
    t.add("epochs=0 run loads everywhere" if ok else "WRONG", ok, f"epochs=0: {err.strip()[:80]} {err2.strip()[:80]} {err3.strip()[:80]}")
    d = write_files(tmp / "notest" / "toy", VALID["recbole"]())
    nt = tmp / "notest-run"
    cli("train", "--dataset", str(d), "--out", str(nt), "--set", "epochs=1", "--set", "split_ratios=[0.8,0.2,0]",
        "--set", "drop_unlinked=false", *tiny)
    rc, out, err = cli("evaluate", str(nt), "--json", "--no-kg")
    try:
        j = _strict_json(out)
        ok = rc == 0 and set(j["metrics"].values()) == {None} and "no user has a held-out item" in j.get("note", "")
    except ValueError as e:
        ok, err = False, str(e)
    t.add("empty test split: null + note" if ok else "WRONG", ok, f"empty test --json: {err.strip()[:120]}")
    bad = tmp / "shape-run"
    shutil.copytree(zero, bad)
    (bad / "config.yaml").write_text((bad / "config.yaml").read_text().replace("embedding_size: 8", "embedding_size: 16"))
    rc, _, err = cli("evaluate", str(bad))
    ok = rc == 2 and one_line(err) and "user.weight is [40, 8] in the file but [40, 16] in the model" in err
    t.add("shape mismatch: tensors named" if ok else "WRONG", ok, f"shape mismatch: {err.strip()[:150]}")
    files = VALID["recbole"]()
    head, body = files["toy.inter"].split(b"\n", 1)
    files["toy.inter"] = head + b"\n" + body * 3
    rc, out, err = cli("datasets", "info", str(write_files(tmp / "dup" / "toy", files)), "--json")
    info = json.loads(out) if rc == 0 else {}
    ok = rc == 0 and 0 <= info.get("sparsity", -1) <= 1 and info.get("distinct_pairs") == 40
    t.add(f"repeated pairs: sparsity {info.get('sparsity', float('nan')):.4f}" if ok else "WRONG", ok, f"datasets info: {err.strip()[:120]}")
    return t


def issue17_data_runs(tmp: Path, run: Path) -> list[Tally]:
    out = []
    for name, fn in (("run lock", lambda: run_lock(tmp / "lock", run)), ("bom/headers", lambda: bom_and_headers(tmp / "bom")),
                     ("ties", lambda: tie_policy(tmp / "ties")), ("run edge cases", lambda: run_edge_cases(tmp / "edge"))):
        s = time.perf_counter()
        for sub in ("lock", "bom", "ties", "edge"):
            (tmp / sub).mkdir(parents=True, exist_ok=True)
        out.append(fn())
        print(f"[{name}: {time.perf_counter() - s:.1f} s]", file=sys.stderr, flush=True)
    return out


# ------------------------------------------------------------------ main
def format_table(rows: list[dict]) -> str:
    cols = ["category", "tried", "as_expected", "lost", "outcomes"]
    w = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    out = ["  ".join(c.ljust(w[i]) for i, c in enumerate(cols)), "  ".join("-" * x for x in w)]
    out += ["  ".join(str(r[c]).ljust(w[i]) for i, c in enumerate(cols)) for r in rows]
    return "\n".join(out)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=12, help="SIGKILL trials (0 = skip)")
    ap.add_argument("--fuzz", type=int, default=600, help="random mutations of the valid files")
    ap.add_argument("--http-rounds", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--keep", type=Path, default=None, help="keep the work files here")
    ap.add_argument("--no-security", action="store_true",
                    help="skip the security cases (hostile checkpoints, chunked bodies, heavy requests, slow clients)")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    tmp = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="ktup-reliability-"))
    tmp.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tallies, extra = [], {}
    try:
        run = _tiny_run(tmp)
        for name, fn in (("datasets", lambda: datasets(tmp / "data")), ("configs", lambda: configs(tmp / "cfg")),
                         ("commands", lambda: commands(tmp / "cmd", run)), ("fuzz", lambda: fuzz(a.fuzz, a.seed)),
                         ("checkpoints", lambda: checkpoints(tmp / "ck", run)), ("numerics", lambda: numerics(tmp / "nan")),
                         ("disks", lambda: disks(tmp / "disk", run))):
            (tmp / name.split()[0]).mkdir(parents=True, exist_ok=True)
            for sub in ("data", "cfg", "cmd", "ck", "nan", "disk"):
                (tmp / sub).mkdir(exist_ok=True)
            s = time.perf_counter()
            tallies.append(fn())
            print(f"[{name}: {time.perf_counter() - s:.1f} s]", file=sys.stderr, flush=True)
        tallies += issue17_data_runs(tmp / "issue17", run)
        if a.kills:
            kt, rows = kills(a.kills, a.seed, tmp)
            tallies.append(kt)
            extra["kill_trials"] = rows
            import kill_trials

            print(kill_trials.format_table(rows))
            print()
        ht, res = http(run, a.http_rounds)
        tallies.append(ht)
        extra["http"] = {k: res[k] for k in ("requests", "seconds", "counts", "statuses", "alive")}
        if not a.no_security:   # issue 17 items 1-4, 10: benchmarks/reliability_security.py
            import reliability_security

            (tmp / "security").mkdir(exist_ok=True)
            sec, extra["security"] = reliability_security.run_all(tmp / "security", run)
            tallies += sec
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    rows = [t.row() for t in tallies]
    print(format_table(rows))
    bad = [f"{r['category']}: {f}" for r in rows for f in r["failures"]]
    lost = sum(r["lost"] for r in rows)
    total = sum(r["tried"] for r in rows)
    print(f"\n{total} cases in {time.perf_counter() - t0:.0f} s; {len(bad)} not as expected; {lost} with something lost")
    for b in bad[:20]:
        print("  " + b)
    if a.json:
        a.json.write_text(json.dumps({"summary": rows, **extra}, indent=2, default=str) + "\n")
    return 0 if not bad and not lost else 1


if __name__ == "__main__":
    raise SystemExit(main())
