"""Full-ranking evaluation of recommendations.

For every user with at least one held-out item in the split, all items are scored
(``model.score_all_items`` on batches of users × chunks of items sized to a memory budget),
items seen before the split are set to −∞, and the top K is kept per chunk and merged
(:func:`top_k_items`, which ``Recommender.top_k`` uses too: same masking, same tie policy, same
memory rule). Ties go in a seeded pseudo-random order per user (:mod:`ktup.evaluation.topk`),
so a scorer that ties everything gets a random scorer's expected metrics, the result does not
depend on chunking, and evaluating twice gives identical numbers. Metrics come from
:mod:`ktup.evaluation.metrics`.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

import numpy as np
import torch

from ktup.errors import KtupError
from ktup.evaluation.metrics import METRICS, batch_gold, hit_matrix, ranking_metrics, summarise
from ktup.evaluation.protocols import Protocol, describe_split, get_protocol
from ktup.evaluation.topk import DEFAULT_TIE_SEED, merge_topk, topk_chunk


@dataclass
class RankingResult:
    summary: dict[str, float]                  # "recall@10" → mean over evaluated users
    per_user: dict[str, np.ndarray]            # "recall@10" → (n_users,) aligned with .users
    users: np.ndarray                          # (n_users,) internal ids of the users averaged over
    n_users: int                               # users with >= 1 held-out item
    protocol: dict[str, Any]                   # name + parameters
    split: str = "valid"
    ks: tuple[int, ...] = (10,)
    n_excluded: int = 0                        # requested users without held-out items (not averaged)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def __getitem__(self, key: str) -> float:
        return self.summary[key]

    @property
    def undefined_reason(self) -> Optional[str]:
        """Why the metrics are undefined (no user to average over), else None."""
        if self.n_users:
            return None
        return (f"no user has a held-out item in split {self.split!r} ({self.n_excluded} without one): "
                "the metrics are undefined")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: protocol, split, users, metrics (no per-user arrays). An undefined metric
        (no user to average over) is ``null``, never a bare ``NaN``, and ``note`` says why."""
        reason = self.undefined_reason
        return {
            "protocol": self.protocol,
            "split": self.split,
            "ks": list(self.ks),
            "users": self.n_users,
            "users_excluded": self.n_excluded,
            "metrics": {k: (float(v) if math.isfinite(v) else None) for k, v in self.summary.items()},
            **({"note": reason} if reason else {}),
            "seconds": round(self.seconds, 4),
            **({"warnings": list(self.warnings)} if self.warnings else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def format_table(self) -> str:
        """A readable table: metrics as rows, cut-offs as columns, headed by protocol and split."""
        p = self.protocol
        lines = [f"split: {self.split}   users: {self.n_users}"
                 + (f" (+{self.n_excluded} without held-out items, not averaged)" if self.n_excluded else ""),
                 f"protocol: {p.get('name')} — {p.get('description', '')}"]
        data = p.get("data")
        if data:
            lines.append("  data: " + ", ".join(f"{k}={v}" for k, v in data.items()))
        if p.get("masking"):
            lines.append(f"  masking: {p['masking']}")
        names = [m for m in p.get("metrics", []) if m in METRICS] + [m for m in METRICS if m not in p.get("metrics", [])]
        width = max(len(n) for n in names) + 2
        header = "metric".ljust(width) + "".join(f"@{k}".rjust(10) for k in self.ks)
        lines += ["", header, "-" * len(header)]
        for n in names:
            label = n + ("*" if n == "ndcg_ktup" else "")
            lines.append(label.ljust(width) + "".join(_cell(self.summary.get(f"{n}@{k}")) for k in self.ks))
        lines.append("")
        if self.undefined_reason:
            lines.append(f"n/a: {self.undefined_reason}")
        lines.append("* ndcg_ktup: the KTUP authors' variant (DCG / DCG of the same hits sorted to the top); not NDCG")
        for w in self.warnings:
            lines.append(f"warning: {w}")
        return "\n".join(lines)


def _cell(v: Optional[float]) -> str:
    return f"{v:10.4f}" if v is not None and math.isfinite(v) else "n/a".rjust(10)


class _FunctionScorer:
    """Adapts a plain ``f(users, items) -> (B, N)`` function to the ``score_all_items`` contract."""

    def __init__(self, fn: Callable):
        self.fn = fn

    def score_all_items(self, users, items=None):
        return self.fn(users, items)


def as_scorer(model: Any) -> Any:
    """Anything with ``score_all_items``, or a bare function with that signature."""
    if hasattr(model, "score_all_items"):
        return model
    if callable(model):
        return _FunctionScorer(model)
    raise KtupError(f"cannot evaluate a {type(model).__name__}: it has no score_all_items(users, items)")


@contextlib.contextmanager
def inference_mode(model: Any) -> Iterator[None]:
    """Eval mode and no autograd for the duration; the model's previous mode is restored."""
    was_training = isinstance(model, torch.nn.Module) and model.training
    if isinstance(model, torch.nn.Module):
        model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        if was_training:
            model.train(True)


def model_device(model: Any) -> torch.device:
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.device
    return torch.device("cpu")


def bytes_per_pair(model: Any) -> int:
    """Memory one scored pair may need, including the model's own temporaries.

    A model may declare ``eval_bytes_per_pair``. A model with a ``memory_budget_mb`` attribute
    bounds its own temporaries (ktup's models chunk internally), so only the evaluator's few
    (B, C) float tensors count. Otherwise assume a translation-style scorer that materialises a
    d-vector per pair (d from ``embedding_size`` or 64) plus a few floats.
    """
    hint = getattr(model, "eval_bytes_per_pair", None)
    if hint:
        return int(hint)
    if getattr(model, "memory_budget_mb", None):
        return 16
    d = getattr(model, "embedding_size", None) or getattr(getattr(model, "config", None), "embedding_size", None) or 64
    return 4 * (int(d) + 8)


def _csr(inter, n_users: int, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-user CSR of distinct items, sorted (one int64 key sort; a duplicate interaction would
    otherwise count twice in |gold|)."""
    key = np.sort(np.asarray(inter.users, dtype=np.int64) * n_items + np.asarray(inter.items, dtype=np.int64))
    # sort + drop repeats: numpy 2.x's plain np.unique hashes first and is ~20x slower on int64
    key = key[np.concatenate(([True], key[1:] != key[:-1]))] if key.size else key
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(key // max(n_items, 1), minlength=n_users), out=indptr[1:])
    return indptr, key % max(n_items, 1)


def _seen_pairs(indptr: np.ndarray, indices: np.ndarray, users: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    rows, items = batch_gold(indptr, indices, users)
    return rows.to(device), items.to(device)


def batch_sizes(scorer: Any, n_items: int, user_batch_size: int, memory_budget_mb: int) -> tuple[int, int]:
    """``(users per batch, items per chunk)``: the one memory rule of full ranking."""
    if user_batch_size <= 0 or memory_budget_mb <= 0:
        raise KtupError("user_batch_size and memory_budget_mb must be > 0")
    budget = memory_budget_mb * 2**20
    per_pair = bytes_per_pair(scorer)
    B = int(max(1, min(user_batch_size, budget // max(1, per_pair * min(n_items, 256)))))
    chunk = int(max(1, min(n_items, budget // max(1, per_pair * B))))
    return B, chunk


def top_k_items(
    model: Any,
    users: np.ndarray,
    k: int,
    n_items: int,
    seen: Optional[tuple[np.ndarray, np.ndarray]] = None,
    exclude: Optional[np.ndarray] = None,
    user_batch_size: int = 512,
    memory_budget_mb: int = 512,
    tie_seed: int = DEFAULT_TIE_SEED,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The top ``k`` items of each user in ``users`` (internal ids): ``(items (U, k'), scores (U, k'))``
    on the CPU, ``k' = min(k, n_items)``, best first; item −1 and score −inf where fewer than k'
    eligible items remain.

    Every user is scored against every item (``model.score_all_items`` on batches of users ×
    chunks of items sized by :func:`batch_sizes`); ``seen = (indptr, indices)`` (a per-user CSR)
    and ``exclude`` (item ids, for everyone) are masked to −inf. Ties: seeded per-user order
    (:mod:`ktup.evaluation.topk`). The one ranking core of evaluation and recommendation.
    """
    scorer = as_scorer(model)
    users = np.asarray(users, dtype=np.int64)
    k = int(min(max(int(k), 0), n_items))
    if k == 0 or users.size == 0:
        return (torch.full((users.size, k), -1, dtype=torch.int64), torch.full((users.size, k), float("-inf")))
    device = model_device(scorer)
    B, chunk = batch_sizes(scorer, n_items, user_batch_size, memory_budget_mb)
    all_items = torch.arange(n_items, dtype=torch.int64, device=device)
    excl = None
    if exclude is not None and len(exclude):
        excl = torch.as_tensor(np.unique(np.asarray(exclude, dtype=np.int64)), device=device)
    out_i, out_s = [], []
    with inference_mode(scorer):
        for b0 in range(0, users.size, B):
            batch = users[b0:b0 + B]
            u = torch.from_numpy(batch).to(device)
            if seen is not None:
                s_rows, s_items = _seen_pairs(seen[0], seen[1], batch, device)
            parts = []
            for c0 in range(0, n_items, chunk):
                c1 = min(n_items, c0 + chunk)
                if c0 == 0 and c1 == n_items:   # every item: None lets a model skip gathering its item table
                    items = all_items if isinstance(scorer, _FunctionScorer) else None
                else:
                    items = all_items[c0:c1]
                scores = scorer.score_all_items(u, items)
                if tuple(scores.shape) != (len(batch), c1 - c0):
                    raise KtupError(f"score_all_items returned shape {tuple(scores.shape)}, expected {(len(batch), c1 - c0)}")
                # a private float32 copy: masking writes into it, and the scorer may return a view
                scores = scores.detach().to(device=device, dtype=torch.float32, copy=True)            # (B, C)
                if seen is not None:
                    in_chunk = (s_items >= c0) & (s_items < c1)
                    flat = s_rows[in_chunk] * (c1 - c0) + (s_items[in_chunk] - c0)
                    scores.view(-1).index_fill_(0, flat, float("-inf"))
                if excl is not None:
                    e = excl[(excl >= c0) & (excl < c1)] - c0
                    if e.numel():
                        scores[:, e] = float("-inf")
                try:
                    parts.append(topk_chunk(scores, k, offset=c0, users=u, seed=tie_seed))
                except FloatingPointError:
                    raise KtupError("the model produced NaN scores; it has diverged (try a lower learning rate)") from None
            vals, ids = merge_topk(parts, k, users=u, seed=tie_seed)                                # (B, k)
            ids = torch.where(torch.isneginf(vals), torch.full_like(ids, -1), ids)  # masked items never count
            out_i.append(ids.cpu())
            out_s.append(vals.cpu())
    return torch.cat(out_i, 0), torch.cat(out_s, 0)


def evaluate_recommendation(
    model: Any,
    dataset,
    split: str = "valid",
    ks: Iterable[int] = (10,),
    protocol: str | Protocol = "recbole",
    user_batch_size: int = 512,
    memory_budget_mb: int = 512,
    users: Optional[Sequence[int]] = None,
    tie_seed: int = DEFAULT_TIE_SEED,
) -> RankingResult:
    """Rank all items for each user with a held-out item in ``split``; return averaged metrics.

    ``model`` is anything with ``score_all_items(users (B,), items (C,)) -> (B, C)`` (higher is
    better) or such a function. Items in ``dataset.seen_before(split)`` are excluded.
    ``users`` restricts the evaluation to those internal ids (still only users with gold items).
    ``tie_seed`` seeds the order of tied scores (:mod:`ktup.evaluation.topk`).
    """
    t0 = time.perf_counter()
    proto = get_protocol(protocol)
    ks = tuple(sorted({int(k) for k in ks}))
    if not ks or ks[0] <= 0:
        raise KtupError(f"cut-offs must be positive integers, got {list(ks)}")
    if user_batch_size <= 0 or memory_budget_mb <= 0:
        raise KtupError("user_batch_size and memory_budget_mb must be > 0")
    scorer = as_scorer(model)
    n_items = int(dataset.n_items)
    kmax = ks[-1]
    gold_ptr, gold_idx = _csr(dataset.split(split), dataset.n_users, n_items)
    seen_ptr, seen_idx = _csr(dataset.seen_before(split), dataset.n_users, n_items)
    n_gold_all = np.diff(gold_ptr)                                  # (n_users,)

    requested = np.arange(dataset.n_users, dtype=np.int64) if users is None else np.unique(np.asarray(users, dtype=np.int64))
    if requested.size and (requested.min() < 0 or requested.max() >= dataset.n_users):
        raise KtupError(f"user ids must lie in 0..{dataset.n_users - 1}")
    eval_users = requested[n_gold_all[requested] > 0]
    n_excluded = int(requested.size - eval_users.size)

    topk, _ = top_k_items(scorer, eval_users, kmax, n_items, seen=(seen_ptr, seen_idx), user_batch_size=user_batch_size,
                          memory_budget_mb=memory_budget_mb, tie_seed=tie_seed)
    if topk.shape[1] < kmax:  # fewer items than K: pad with "no item"
        topk = torch.cat([topk, torch.full((topk.shape[0], kmax - topk.shape[1]), -1, dtype=torch.int64)], 1)
    g_rows, g_items = batch_gold(gold_ptr, gold_idx, eval_users)
    hits = hit_matrix(topk, g_rows, g_items, n_items)
    per_user_t = ranking_metrics(hits, torch.from_numpy(n_gold_all[eval_users].astype(np.float64)), ks)
    per_user = {name: v.numpy() for name, v in per_user_t.items()}
    return RankingResult(
        summary=summarise(per_user),
        per_user=per_user,
        users=eval_users,
        n_users=int(eval_users.size),
        protocol=proto.parameters(split_used=describe_split((getattr(dataset, "meta", None) or {}).get("split"))),
        split=split,
        ks=ks,
        n_excluded=n_excluded,
        seconds=time.perf_counter() - t0,
    )

