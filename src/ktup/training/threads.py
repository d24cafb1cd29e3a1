"""How many torch threads a run uses when ``train.threads`` is 0 (auto).

An explicit ``train.threads=N`` always wins. Otherwise (``benchmarks/threads.py``, figures in
``benchmarks/results/threads-*.json``):

* on a machine whose cores are already busy (load average ≥ cores), every extra thread competes
  with the other work and OpenMP's spinning barriers stall: measured on a shared 2-core machine
  (load 4-8), two threads took 3.5-4.5x as long per step as one, for every size tried (the ml-100k
  defaults up to batch 4096 x embedding 256), and a user saw 10x per epoch (issue 18);
* small models gain little from intra-op threads even on idle cores: a ktup step on ml-100k
  (batch 512, 4 negatives, embedding 64) is made of many small kernels whose thread start-up
  costs as much as their arithmetic. The threshold below keeps the shipped ml-100k settings
  (0.66 M) and batch 2048 x embedding 128 (1.3 M) at one thread; it was not tuned on an idle
  machine (none was available), so it errs towards one thread.

So: one thread when a step moves fewer than :data:`MIN_WORK_FOR_THREADS` numbers or when fewer
than two cores are free; else the free cores (never more than torch's own default). The choice
and its reason go into the run header, ``train.log`` and ``run.json``. Runs are reproducible
for a given thread count; set ``train.threads`` to pin it across machines.
"""

from __future__ import annotations

import os

#: rows × embedding width × (1 + negatives) below which one thread is used (see module doc).
MIN_WORK_FOR_THREADS = 4_000_000


def step_work(train_cfg, model_cfg) -> int:
    """Numbers a training step moves through its tables: batch × (1 + negatives) × width."""
    rows = max(int(train_cfg.batch_size), int(train_cfg.kg_batch_size))
    return rows * (1 + int(train_cfg.num_negatives)) * int(model_cfg.embedding_size)


def free_cores(cores: int | None = None, load: float | None = None) -> int:
    """Cores not already busy according to the 1-minute load average (at least 1)."""
    cores = cores if cores is not None else (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                             else os.cpu_count() or 1)
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (OSError, AttributeError):
            load = 0.0
    return max(1, int(cores - load + 0.5))


def choose_threads(requested: int, work: int, torch_default: int, free: int | None = None) -> tuple[int, str]:
    """``(threads, reason)`` for a run; ``requested > 0`` is the user's explicit choice."""
    if requested > 0:
        return requested, "train.threads"
    if torch_default <= 1:
        return 1, "auto: one core"
    if work < MIN_WORK_FOR_THREADS:
        return 1, "auto: a small model gains nothing from threads"
    free = free_cores() if free is None else free
    n = max(1, min(torch_default, free))
    return n, ("auto: the machine is busy" if n == 1 else f"auto: {n} free cores")


_torch_default: int | None = None   # torch's own thread count, read before the first change


def apply_threads(train_cfg, model_cfg) -> tuple[int, str]:
    """Choose and set the process's torch thread count; returns ``(threads, reason)``."""
    global _torch_default
    import torch

    if _torch_default is None:
        _torch_default = torch.get_num_threads()
    n, why = choose_threads(int(train_cfg.threads), step_work(train_cfg, model_cfg), _torch_default)
    torch.set_num_threads(n)
    return n, why
