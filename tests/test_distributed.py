"""Data-parallel training on torch.distributed: two gloo processes on 127.0.0.1.

One spawn runs every scenario (spawning costs seconds): a 2-process training, the same run
killed after 2 epochs and resumed, and sharded evaluation against single-process evaluation.
The tests then check what each scenario left behind.
"""

from __future__ import annotations

import json
import os
import pickle
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from test_train_support import tiny_config, tiny_dataset

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="needs torch.distributed with gloo")

EPOCHS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cfg(epochs: int, sparse: bool):
    return tiny_config("ktup", epochs=epochs, lr=0.05, patience=0, sparse=sparse, batch_size=64)


def _worker(rank: int, world: int, port: int, out: str) -> None:
    """Runs in each spawned process (must be importable: module level)."""
    import torch.distributed as dist

    from ktup.evaluation import evaluate_recommendation
    from ktup.models import build_model
    from ktup.training import train
    from ktup.training.distributed import evaluate_recommendation_sharded, info

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        out_p = Path(out)
        ds = tiny_dataset()
        # 1. sharded evaluation == single-process evaluation (small user batches: several per rank)
        torch.manual_seed(3)
        model = build_model(_cfg(1, False).model, ds).eval()
        kw = dict(ks=(5, 10), user_batch_size=4, memory_budget_mb=1)
        sharded = evaluate_recommendation_sharded(model, ds, "test", di=info(), **kw)
        single = evaluate_recommendation(model, ds, "test", **kw)
        if rank == 0:
            with open(out_p / "eval.pkl", "wb") as f:
                pickle.dump({"sharded": (sharded.summary, sharded.per_user, sharded.users, sharded.n_users),
                             "single": (single.summary, single.per_user, single.users, single.n_users)}, f)
        # 2. a full 2-process run, sparse tables (gloo all-reduces sparse gradients)
        run = train(_cfg(EPOCHS, True), dataset=ds, out=str(out_p / "full"), progress="quiet")
        # 3. the same run stopped after 2 epochs, then resumed to the end
        train(_cfg(1, True), dataset=ds, out=str(out_p / "part"), progress="quiet")
        cont = train(_cfg(EPOCHS, True), dataset=ds, resume=str(out_p / "part"), progress="quiet")
        sd = {k: v.clone() for k, v in run.model.state_dict().items()}
        torch.save({"full": sd, "cont": cont.model.state_dict(), "final": run.final},
                   out_p / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_procs(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    torch.multiprocessing.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    return out


@pytest.fixture(scope="module")
def one_proc(tmp_path_factory):
    from ktup.training import train

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("single")
        return train(_cfg(EPOCHS, True), dataset=tiny_dataset(), out=str(out / "r"), progress="quiet")
    finally:
        torch.set_num_threads(before)


def _metrics(path: Path) -> list[dict]:
    return [json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines()]


def test_sharded_evaluation_equals_single_process_exactly(two_procs):
    with open(two_procs / "eval.pkl", "rb") as f:
        r = pickle.load(f)
    (s_sum, s_per, s_users, s_n), (o_sum, o_per, o_users, o_n) = r["sharded"], r["single"]
    assert s_n == o_n > 8                      # more users than one batch: both ranks evaluated some
    assert np.array_equal(s_users, o_users)
    assert s_sum == o_sum                      # exactly, not approximately
    for k in o_per:
        assert np.array_equal(s_per[k], o_per[k]), k


def test_two_processes_train_and_rank0_alone_writes_the_run(two_procs):
    run_dir = two_procs / "full"
    rows = _metrics(run_dir)
    epochs = [r for r in rows if not r.get("final")]
    assert [r["epoch"] for r in epochs] == list(range(1, EPOCHS + 1))     # one line per epoch, not two
    assert epochs[-1]["rec_loss"] < epochs[0]["rec_loss"]
    assert epochs[-1]["kg_loss"] < epochs[0]["kg_loss"]
    assert sum(1 for r in rows if r.get("final")) == 1
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "finished" and info["nproc"] == 2
    assert (run_dir / "checkpoints" / "best.pt").exists() and (run_dir / "final.json").exists()
    # the replicas stay identical (DDP averages gradients; rank 0's best weights are broadcast)
    a, b = torch.load(two_procs / "rank0.pt"), torch.load(two_procs / "rank1.pt")
    for k in a["full"]:
        assert torch.equal(a["full"][k], b["full"][k]), k
    assert a["final"]["test"] == b["final"]["test"]


def test_two_processes_match_one_process_with_the_same_total_batch(two_procs, one_proc):
    two = json.loads((two_procs / "full" / "final.json").read_text())
    one = one_proc.final
    # same global batches, different negatives per rank: close, not equal
    assert abs(two["test"]["ndcg@10"] - one["test"]["ndcg@10"]) < 0.1
    assert abs(two["test"]["recall@10"] - one["test"]["recall@10"]) < 0.15
    e2, e1 = _metrics(two_procs / "full")[EPOCHS - 1], _metrics(one_proc.path)[EPOCHS - 1]
    assert e2["rec_steps"] == e1["rec_steps"] and e2["kg_steps"] == e1["kg_steps"]
    assert abs(e2["rec_loss"] - e1["rec_loss"]) < 0.25 * e1["rec_loss"]


def test_distributed_resume_reproduces_the_uninterrupted_run(two_procs):
    a = torch.load(two_procs / "rank0.pt")
    for k in a["full"]:
        assert torch.equal(a["full"][k], a["cont"][k]), k
    rows = _metrics(two_procs / "part")
    assert [r["epoch"] for r in rows if not r.get("final")] == list(range(1, EPOCHS + 1))
    full_final = json.loads((two_procs / "full" / "final.json").read_text())
    part_final = json.loads((two_procs / "part" / "final.json").read_text())
    assert full_final["test"] == part_final["test"]


def test_ktup_train_nproc_launches_torchrun(tmp_path):
    """``ktup train --nproc 2`` runs torchrun itself; one run directory, one report."""
    import subprocess
    import sys

    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-m", "ktup", "train", "--dataset", "synthetic-tiny", "--model", "bpr",
                        "--nproc", "2", "--set", "epochs=2", "--set", "sparse=true", "--out", str(tmp_path / "r"),
                        "--quiet"], capture_output=True, text=True, env=env, timeout=240)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.count("run directory:") == 1
    info = json.loads((tmp_path / "r" / "run.json").read_text())
    assert info["status"] == "finished" and info["nproc"] == 2
