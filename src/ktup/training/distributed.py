"""Data-parallel training on ``torch.distributed`` (gloo on CPU, NCCL on GPUs; same code).

Launch with ``torchrun --nproc-per-node N -m ktup train ...`` or ``ktup train --nproc N`` (which
runs torchrun itself). Every rank holds a full replica of the model and:

* takes its share of every *global* batch: the (seed, epoch) permutation of the interactions
  and the (seed, pass) permutation of the triples are the same on all ranks, global batch ``b``
  is cut in ``world`` near-equal pieces and rank ``r`` trains on piece ``r`` — so a run with N
  processes sees the same global batches as a single process with the same ``batch_size``;
* draws its negatives from generators seeded by (seed, epoch, rank) (rank 0: the single-process
  ones);
* computes its loss through :class:`LossModule` wrapped in ``DistributedDataParallel``, which
  averages gradients across ranks in backward. Sparse embedding gradients are all-reduced by DDP
  on gloo; NCCL has no sparse all-reduce, so with NCCL the trainer falls back to dense tables;
* evaluates a disjoint block of users (:func:`evaluate_recommendation_sharded`) and gathers the
  per-user metrics, so the result equals a single-process evaluation exactly.

Rank 0 alone writes the run directory (config, checkpoints, metrics, logs, plots). The run
directory must be reachable by every rank for ``--resume`` (a shared filesystem on several nodes).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ktup.errors import ConfigError


# ====================================================================== process group
@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def info() -> DistInfo:
    """This process's place in the current process group (rank 0 of 1 when not distributed)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
        return DistInfo(dist.get_rank(), dist.get_world_size(), local)
    return DistInfo()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def backend_for(device: str, requested: str = "auto") -> str:
    if requested != "auto":
        return requested
    return "nccl" if device.startswith("cuda") else "gloo"


def init_from_env(device: str, backend: str = "auto") -> bool:
    """Join the process group torchrun describes (env ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` …).

    Returns True when this call created the group (the caller then destroys it)."""
    import torch.distributed as dist

    if not launched_by_torchrun() or dist.is_initialized():
        return False
    be = backend_for(device, backend)
    if be == "nccl":
        if not torch.cuda.is_available():
            raise ConfigError("train.dist_backend: nccl needs CUDA devices; use gloo on CPU")
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(be)
    return True


def shutdown(created: bool) -> None:
    import torch.distributed as dist

    if created and dist.is_initialized():
        dist.destroy_process_group()


def training_device(name: str, di: DistInfo) -> torch.device:
    """``cuda`` on several GPU processes means each rank's own GPU (``cuda:LOCAL_RANK``)."""
    if di.enabled and name == "cuda":
        return torch.device(f"cuda:{di.local_rank}")
    return torch.device(name)


def sparse_allowed(di: DistInfo) -> bool:
    """DDP all-reduces sparse gradients on gloo only."""
    import torch.distributed as dist

    return not di.enabled or dist.get_backend() == "gloo"


# ====================================================================== collectives
def broadcast_object(obj: Any, di: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank (a run directory name, a decision)."""
    if not di.enabled:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_module_(module: nn.Module, di: DistInfo) -> None:
    """Copy rank 0's parameters and buffers to every rank (after rank 0 reloaded a checkpoint)."""
    if not di.enabled:
        return
    import torch.distributed as dist

    with torch.no_grad():
        for t in list(module.state_dict().values()):
            if torch.is_tensor(t):
                dist.broadcast(t, src=0)


def all_reduce_sum(values: Sequence[float], device: torch.device, di: DistInfo) -> list[float]:
    """Element-wise sum of a few numbers over ranks (epoch loss sums and counts)."""
    if not di.enabled:
        return [float(v) for v in values]
    import torch.distributed as dist

    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def all_finite(loss: torch.Tensor, di: DistInfo) -> bool:
    """Whether the step's loss is finite on every rank (one rank raising alone would leave the
    others waiting in the gradient all-reduce)."""
    ok = torch.isfinite(loss.detach())
    if not di.enabled:
        return bool(ok)
    import torch.distributed as dist

    bad = (~ok).to(torch.float32).reshape(1)
    dist.all_reduce(bad)
    return bool(bad.item() == 0)


def barrier(di: DistInfo) -> None:
    if di.enabled:
        import torch.distributed as dist

        dist.barrier()


# ====================================================================== sharding
def shard(batch: torch.Tensor, di: DistInfo) -> torch.Tensor:
    """This rank's piece of a global batch (rows cut in ``world`` near-equal pieces).

    A piece is never empty: when a (last, short) global batch has fewer rows than ranks, an empty
    piece takes the batch's first row, so every rank runs every step (DDP needs them to)."""
    if not di.enabled:
        return batch
    piece = torch.tensor_split(batch, di.world)[di.rank]
    return piece if piece.shape[0] else batch[:1]


class LossModule(nn.Module):
    """The training step's forward as one ``nn.Module`` call, so DDP sees it.

    DDP synchronises gradients of what its wrapped module's ``forward`` computed; the models'
    losses are methods (``rec_loss``, ``kg_loss``). ``forward`` also touches every parameter with
    a zero-weighted, zero-row term: DDP expects a gradient for every parameter in every step
    (a KG step does not use the user table), and an empty lookup gives a sparse table an empty
    sparse gradient instead of a row of zeros that lazy Adam would count as a visit.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, rec_args: Optional[tuple], kg_args: Optional[tuple], lam: float, kg_weight: float = 1.0):
        from ktup.training.schedule import joint_loss

        loss, rec, kg = joint_loss(self.model, rec_args, kg_args, lam, kg_weight)
        loss = loss + 0.0 * self._touch_all(loss.device)
        return loss, rec, kg

    def _touch_all(self, device) -> torch.Tensor:
        none = torch.zeros(0, dtype=torch.long, device=device)
        total = torch.zeros((), device=device)
        seen = set()
        for mod in self.model.modules():
            if isinstance(mod, nn.Embedding):
                total = total + mod(none).sum()
                seen.add(id(mod.weight))
        for p in self.model.parameters():
            if p.requires_grad and id(p) not in seen:
                total = total + p.reshape(-1)[:0].sum()
        return total


def wrap_ddp(model: nn.Module, device: torch.device, di: DistInfo) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel as DDP

    lm = LossModule(model)
    ids = [device.index] if device.type == "cuda" else None
    # Buffers (ktup's item_entity map) are constant: syncing them every forward would cost
    # O(items) per step. Parameters are broadcast from rank 0 when wrapping.
    try:
        return DDP(lm, device_ids=ids, forward_sync_buffers=False, find_unused_parameters=False)
    except TypeError:  # torch without forward_sync_buffers
        return DDP(lm, device_ids=ids, broadcast_buffers=False, find_unused_parameters=False)


# ====================================================================== evaluation
def user_blocks(eval_users: np.ndarray, block: int, di: DistInfo) -> np.ndarray:
    """This rank's contiguous run of whole ``block``-sized user batches (rank order = user order)."""
    n_blocks = (eval_users.size + block - 1) // block
    b0 = (n_blocks * di.rank) // di.world
    b1 = (n_blocks * (di.rank + 1)) // di.world
    return eval_users[b0 * block:b1 * block]


def evaluate_recommendation_sharded(model, dataset, split: str = "valid", ks=(10,), protocol="recbole",
                                    user_batch_size: int = 512, memory_budget_mb: int = 512, di: Optional[DistInfo] = None):
    """``evaluate_recommendation`` with users split across ranks; every rank returns the full result.

    Each rank evaluates whole user batches of the size the single-process evaluator would use,
    so every user is scored in the same batch composition, and the per-user metrics are gathered
    in user order: the summary equals the single-process one exactly.
    """
    from ktup.evaluation import evaluate_recommendation
    from ktup.evaluation.metrics import summarise
    from ktup.evaluation.ranking import bytes_per_pair

    di = di or info()
    kw = dict(ks=ks, protocol=protocol, user_batch_size=user_batch_size, memory_budget_mb=memory_budget_mb)
    if not di.enabled:
        return evaluate_recommendation(model, dataset, split, **kw)
    import torch.distributed as dist

    n_gold = np.bincount(np.asarray(dataset.split(split).users, dtype=np.int64), minlength=dataset.n_users)
    eval_users = np.flatnonzero(n_gold > 0).astype(np.int64)
    # the evaluator's own user-batch size (ranking.evaluate_recommendation)
    per_pair = bytes_per_pair(model)
    budget = memory_budget_mb * 2**20
    B = int(max(1, min(user_batch_size, budget // max(1, per_pair * min(int(dataset.n_items), 256)))))
    mine = user_blocks(eval_users, B, di)
    res = evaluate_recommendation(model, dataset, split, users=mine, **kw) if mine.size else None
    part = None if res is None else (res.users, res.per_user, res.seconds)
    parts: list = [None] * di.world
    dist.all_gather_object(parts, part)
    parts = [p for p in parts if p is not None]
    if res is None:  # this rank had no users (more ranks than batches): shape the result from one that had
        res = evaluate_recommendation(model, dataset, split, users=eval_users[:1], **kw)
    users = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    per_user = {k: np.concatenate([p[1][k] for p in parts]) for k in res.per_user} if parts else res.per_user
    res.users, res.per_user, res.n_users = users, per_user, int(users.size)
    res.summary = summarise(per_user)
    res.n_excluded = int(dataset.n_users - users.size)
    res.seconds = max(p[2] for p in parts) if parts else res.seconds
    return res


# ====================================================================== launching
def launch_torchrun(nproc: int, argv: Sequence[str]) -> int:
    """Run ``ktup <argv>`` in ``nproc`` processes on this machine under torchrun; returns its exit code.

    ``--standalone`` picks a free local rendezvous port. Each process sees ``RANK`` etc. and does
    not spawn again."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={int(nproc)}",
           "-m", "ktup", *argv]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // int(nproc))))
    if shutil.which(sys.executable) is None:  # pragma: no cover - sys.executable always exists
        raise ConfigError("cannot find the Python interpreter to launch torchrun")
    return subprocess.call(cmd, env=env)
