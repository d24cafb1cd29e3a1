"""Pieces the trainer assembles: device, optimiser, samplers, pre-trained initialisation."""

from __future__ import annotations

import time
from typing import Optional

import torch

from ktup.errors import ConfigError
from ktup.registry import OPTIMIZERS
from ktup import runs


def device_for(name: str) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name!r} requested but no CUDA device is available")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise ConfigError(f"train.device: expected cpu or cuda, got {name!r}")
    return torch.device(name)


def uses_sparse(cfg, model=None) -> bool:
    """Row-wise sparse updates: ``train.sparse``, the ``sparse_adam`` optimiser, or (given the
    model) big tables whose rows together reach ``train.sparse_auto_rows``.

    Measured (benchmarks/scale.py, docs/SCALING.md): lazy Adam has a higher fixed cost per step
    than fused dense Adam, and wins once the tables are large (≈ 5× on a 200k-row table), so
    small data (ml-100k) keeps dense updates."""
    if cfg.sparse or cfg.optimizer == "sparse_adam":
        return True
    if model is None or not getattr(cfg, "sparse_auto_rows", 0):
        return False
    from ktup.training.sparse import big_table_rows

    return big_table_rows(model) >= cfg.sparse_auto_rows


def check_optimizer(cfg) -> None:
    """Refuse what the trainer cannot do, before a run directory is written."""
    OPTIMIZERS.check(cfg.optimizer)


def build_optimizer(cfg, params, sparse: Optional[bool] = None) -> torch.optim.Optimizer:
    """adam | adagrad | sgd, fused kernels where torch has them (same numbers, ~1.5x faster steps).

    With sparse updates (:func:`uses_sparse`): adam is :class:`~ktup.training.sparse.LazyAdam`
    (row-wise, lazy weight decay); adagrad and sgd are torch's own, which accept sparse gradients
    but not weight decay with them — the trainer adds it lazily (``sparse.add_weight_decay_``).
    """
    from ktup.training.sparse import LazyAdam

    check_optimizer(cfg)
    params = list(params)
    if uses_sparse(cfg) if sparse is None else sparse:
        if cfg.optimizer in ("adam", "sparse_adam"):
            return LazyAdam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        cls = torch.optim.Adagrad if cfg.optimizer == "adagrad" else torch.optim.SGD
        # torch's sparse Adagrad builds COO tensors from indices it made itself: say explicitly that
        # they need no invariant checks (torch's default, which it otherwise warns about on every run)
        torch.sparse.check_sparse_tensor_invariants.disable()
        return cls(params, lr=cfg.lr, weight_decay=0.0, foreach=False)
    cls = OPTIMIZERS.get(cfg.optimizer)
    kw = dict(lr=cfg.lr, weight_decay=cfg.weight_decay)
    for extra in ({"fused": True}, {"foreach": True}, {}):
        try:
            return cls(params, **kw, **extra)
        except (RuntimeError, TypeError, ValueError):
            continue
    raise ConfigError(f"train.optimizer: cannot build {cfg.optimizer}")  # unreachable in practice


def metric_k(metric: str) -> Optional[int]:
    if "@" in metric:
        try:
            return int(metric.split("@", 1)[1])
        except ValueError:
            raise ConfigError(f"train.valid_metric: cannot read K in {metric!r} (e.g. ndcg@10)") from None
    return None


def timestamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def finite_params(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def make_samplers(dataset, cfg, device, uses_rec: bool, uses_kg: bool):
    """Negative item and corrupted-triple samplers (``ktup.training.sampling``), for the tasks trained."""
    from ktup.training.sampling import CorruptTripleSampler, NegativeItemSampler

    neg = NegativeItemSampler(dataset, device=device) if uses_rec else None
    kg = CorruptTripleSampler(dataset, mode=cfg.kg_sampling, device=device) if uses_kg else None
    return neg, kg


def init_from(model, run_dirs, dataset, device, log) -> None:
    """Start from trained tup/transh runs (``train.init_from``)."""
    fp = runs.dataset_fingerprint(dataset)
    for rd in run_dirs:
        src = runs.load_run(rd, checkpoint="best", device=str(device))
        if runs.dataset_fingerprint(src.dataset) != fp:
            raise ConfigError(f"train.init_from: {rd} was trained on different data "
                              f"({src.info.get('dataset')}); ids would not line up")
        if model.init_from(src.model) is not None:   # the model's own rule (Model.init_from)
            log(f"initialised from {rd} ({src.info.get('model')})")
            continue
        own = model.state_dict()
        taken = {k: v for k, v in src.model.state_dict().items() if k in own and own[k].shape == v.shape}
        if not taken:
            raise ConfigError(f"train.init_from: {rd} ({src.info.get('model')}) shares no parameters "
                              f"with {model.name}")
        model.load_state_dict(taken, strict=False)
        log(f"initialised {len(taken)} tensors from {rd}: {', '.join(sorted(taken))}")
