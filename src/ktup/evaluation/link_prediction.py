"""KG completion (link prediction) with filtered, tie-aware ranks.

For each evaluation triple (h, r, t) the true tail is ranked among all entities for
``(h, r, ?)`` and the true head among all entities for ``(?, r, t)``.

*Filtered*: the other known true triples (``dataset.kg_all``: train, valid and test) are not
competitors. The filter is built once as a sparse index — sorted int64 keys of the query
``(h, r)`` (resp. ``(r, t)``) with the answers in CSR form — and per batch the known answers of
the batch's queries are gathered as (row, column) pairs and set to −∞. No dense
(queries × entities) mask is ever built for the whole split.

*Ties* get the realistic rank: with ``n_gt`` competitors scoring strictly higher and ``n_eq``
other competitors scoring equal, ``optimistic = 1 + n_gt``, ``pessimistic = 1 + n_gt + n_eq``,
``realistic = (optimistic + pessimistic) / 2``; a constant scorer lands in the middle.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch

from ktup.errors import KtupError
from ktup.evaluation.ranking import bytes_per_pair, inference_mode, model_device

HITS_AT = (1, 3, 10)


class AnswerIndex:
    """Known answers of ``(a, b) → c`` queries (e.g. (h, r) → tails) as sorted keys + CSR."""

    def __init__(self, a: np.ndarray, b: np.ndarray, c: np.ndarray, n_b: int):
        self.n_b = int(n_b)
        key = a.astype(np.int64) * self.n_b + b.astype(np.int64)      # (T,)
        order = np.lexsort((c, key))
        key, c = key[order], c[order].astype(np.int64)
        self.keys, starts = np.unique(key, return_index=True)          # (Q,) sorted distinct queries
        self.indptr = np.append(starts, key.size).astype(np.int64)     # (Q+1,)
        self.answers = c                                               # (T,)

    def pairs(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All known answers of a batch of queries as ``(row, answer)`` index pairs."""
        q = a.astype(np.int64) * self.n_b + b.astype(np.int64)         # (B,)
        pos = np.searchsorted(self.keys, q).clip(max=max(self.keys.size - 1, 0))
        found = self.keys.size > 0
        found = (self.keys[pos] == q) if found else np.zeros(q.shape, dtype=bool)
        starts = np.where(found, self.indptr[pos], 0)
        counts = np.where(found, self.indptr[np.minimum(pos + 1, self.keys.size)] - starts, 0)
        rows = np.repeat(np.arange(q.size, dtype=np.int64), counts)
        offsets = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
        return rows, self.answers[np.repeat(starts, counts) + offsets]


def tie_aware_ranks(scores: torch.Tensor, true_idx: torch.Tensor, exclude_rows: Optional[torch.Tensor] = None,
                    exclude_cols: Optional[torch.Tensor] = None, also_raw: bool = False):
    """Realistic rank (B,) float64 of column ``true_idx[b]`` in each row of ``scores`` (B, E).

    ``exclude_rows/cols`` (filtered setting) name competitors removed before ranking; the true
    column is never a competitor of itself. With ``also_raw`` returns ``(filtered, raw)``.

    One pass does the counting: with ``d = score − true score``, ``heaviside(d, ½)`` is 1 for a
    better competitor, ½ for a tie and 0 otherwise, so its row sum is ``n_gt + n_eq/2``
    (a float sum: much cheaper than reducing boolean masks). Excluded entries get ``d = −1``.
    ``scores`` is not modified. A NaN rank means a non-finite score.
    """
    B = scores.shape[0]
    ar = torch.arange(B, device=scores.device)
    d = scores - scores[ar, true_idx].unsqueeze(1)                      # (B, E), a private copy
    d[ar, true_idx] = -1.0
    half = torch.tensor(0.5, dtype=d.dtype, device=d.device)
    raw = None
    if also_raw or exclude_rows is None:
        raw = 1.0 + torch.heaviside(d, half).sum(1).to(torch.float64)
        if exclude_rows is None:
            return (raw, raw) if also_raw else raw
    if exclude_rows.numel():
        d[exclude_rows, exclude_cols] = -1.0
    filt = 1.0 + torch.heaviside(d, half, out=d).sum(1).to(torch.float64)
    return (filt, raw) if also_raw else filt


def rank_metrics(ranks: np.ndarray) -> dict[str, float]:
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.size == 0:
        return {"mr": float("nan"), "mrr": float("nan"), **{f"hits@{k}": float("nan") for k in HITS_AT}}
    out = {"mr": float(ranks.mean()), "mrr": float((1.0 / ranks).mean())}
    for k in HITS_AT:
        out[f"hits@{k}"] = float((ranks <= k).mean())
    return out


@dataclass
class LinkPredictionResult:
    summary: dict[str, float]            # both directions: mr, mrr, hits@1, hits@3, hits@10
    head: dict[str, float]
    tail: dict[str, float]
    head_ranks: np.ndarray               # (n,) realistic ranks, aligned with .triples
    tail_ranks: np.ndarray
    triples: np.ndarray                  # (n, 3) evaluated triples
    split: str = "test"
    filtered: bool = True
    raw: Optional[dict[str, dict[str, float]]] = None   # {"both","head","tail"} when also_raw
    seconds: float = 0.0
    n_available: int = 0                 # triples in the split before subsampling
    sample_seed: Optional[int] = None    # seed of the subsample when n_triples < n_available
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_triples(self) -> int:
        return int(self.triples.shape[0])

    def to_dict(self) -> dict[str, Any]:
        d = {"split": self.split, "setting": "filtered" if self.filtered else "raw", "ranks": "realistic",
             "triples": self.n_triples, "triples_available": self.n_available,
             **({"sample_seed": self.sample_seed} if self.sample_seed is not None else {}),
             **self.summary, "head": dict(self.head), "tail": dict(self.tail), "seconds": round(self.seconds, 4)}
        if self.raw is not None:
            d["raw"] = self.raw
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def format_table(self) -> str:
        setting = "filtered" if self.filtered else "raw"
        lines = [f"KG link prediction — split: {self.split}, {setting}, realistic ranks (ties: mean of optimistic and pessimistic)",
                 f"triples: {self.n_triples}" + (f" of {self.n_available} (a seeded random sample, seed {self.sample_seed})"
                                                  if self.n_available != self.n_triples else " (all)")]
        cols = ["mr", "mrr"] + [f"hits@{k}" for k in HITS_AT]
        header = "".ljust(14) + "".join(c.rjust(10) for c in cols)
        lines += ["", header, "-" * len(header)]
        rows = [("both", self.summary), ("head", self.head), ("tail", self.tail)]
        if self.raw is not None and self.filtered:
            rows += [(f"raw {k}", v) for k, v in self.raw.items()]
        for name, m in rows:
            lines.append(name.ljust(14) + f"{m['mr']:10.1f}" + "".join(f"{m[c]:10.4f}" for c in cols[1:]))
        return "\n".join(lines)


SAMPLE_SEED = 0


def _subsample(n: int, max_triples: int) -> np.ndarray:
    """Deterministic subset (seeded permutation, kept in the split's order)."""
    if max_triples <= 0 or max_triples >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(SAMPLE_SEED).permutation(n)[:max_triples])


def _score_matrix(fn, a: torch.Tensor, b: torch.Tensor, n_entities: int, chunk: int, device) -> torch.Tensor:
    """(B, E) scores, calling the model on entity chunks so its own temporaries stay bounded."""
    if chunk >= n_entities:
        return fn(a, b, None).to(torch.float32)          # None = all entities (the model's fast path)
    out = [fn(a, b, torch.arange(c0, min(n_entities, c0 + chunk), device=device)).to(torch.float32)
           for c0 in range(0, n_entities, chunk)]
    return torch.cat(out, 1)


def evaluate_link_prediction(
    model: Any,
    dataset,
    split: str = "test",
    filtered: bool = True,
    max_triples: int = 0,
    batch_size: int = 256,
    also_raw: bool = False,
    memory_budget_mb: int = 512,
    progress: bool = False,
) -> LinkPredictionResult:
    """Rank the true tail of (h, r, ?) and the true head of (?, r, t) for the split's triples.

    ``model`` needs ``score_tails(h, r, entities)`` and ``score_heads(r, t, entities)`` returning
    (B, len(entities)) scores, higher is better. ``max_triples > 0`` evaluates a seeded random
    sample of that many triples (:data:`SAMPLE_SEED`); ``progress`` draws a bar on stderr.
    """
    t0 = time.perf_counter()
    if split not in ("train", "valid", "test"):
        raise KtupError(f"unknown KG split {split!r} (train, valid, test)")
    if not (hasattr(model, "score_tails") and hasattr(model, "score_heads")):
        raise KtupError(f"{type(model).__name__} cannot be evaluated on link prediction (no score_tails/score_heads)")
    triples_all = np.asarray(getattr(dataset, f"kg_{split}"), dtype=np.int64).reshape(-1, 3)
    sel = _subsample(triples_all.shape[0], int(max_triples))
    triples = triples_all[sel]
    n_ent, n_rel = int(dataset.n_entities), int(dataset.n_relations)

    known = np.asarray(dataset.kg_all, dtype=np.int64).reshape(-1, 3)
    tails_of = AnswerIndex(known[:, 0], known[:, 1], known[:, 2], n_rel) if filtered else None    # (h, r) → t
    heads_of = AnswerIndex(known[:, 1], known[:, 2], known[:, 0], n_ent) if filtered else None    # (r, t) → h

    device = model_device(model)
    per_pair = bytes_per_pair(model)
    budget = memory_budget_mb * 2**20
    B = int(max(1, min(batch_size, budget // max(1, 16 * n_ent))))   # a few (B, E) float copies
    chunk = int(max(1, min(n_ent, budget // max(1, per_pair * B))))

    head_ranks, tail_ranks, raw_head, raw_tail = [], [], [], []
    bar = None
    if progress:
        import sys

        from tqdm import tqdm

        bar = tqdm(total=int(triples.shape[0]), desc=f"KG link prediction ({split})", unit="triple", leave=False,
                   file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
    with inference_mode(model):
        for b0 in range(0, triples.shape[0], B):
            if bar is not None and b0:
                bar.update(B)
            tb = triples[b0:b0 + B]
            h, r, t = (torch.from_numpy(np.ascontiguousarray(tb[:, j])).to(device) for j in range(3))
            for direction, fn, q1, q2, true, index, q_np, ranks, raws in (
                ("tail", model.score_tails, h, r, t, tails_of, (tb[:, 0], tb[:, 1]), tail_ranks, raw_tail),
                ("head", model.score_heads, r, t, h, heads_of, (tb[:, 1], tb[:, 2]), head_ranks, raw_head),
            ):
                scores = _score_matrix(fn, q1, q2, n_ent, chunk, device)          # (B, E)
                if tuple(scores.shape) != (len(tb), n_ent):
                    raise KtupError(f"score_{direction}s returned shape {tuple(scores.shape)}, expected {(len(tb), n_ent)}")
                if index is None:                                                # raw setting only
                    got = [(raws, tie_aware_ranks(scores, true))]
                else:
                    rows, cols = (torch.from_numpy(x).to(device) for x in index.pairs(*q_np))
                    if also_raw:
                        filt, raw_r = tie_aware_ranks(scores, true, rows, cols, also_raw=True)
                        got = [(ranks, filt), (raws, raw_r)]
                    else:
                        got = [(ranks, tie_aware_ranks(scores, true, rows, cols))]
                for dest, value in got:
                    if torch.isnan(value).any():
                        raise KtupError("the model produced non-finite scores (NaN or infinite); it has diverged "
                                        "(try a lower learning rate)")
                    dest.append(value.cpu())

    if bar is not None:
        bar.close()

    def cat(xs):
        return torch.cat(xs).numpy() if xs else np.zeros(0)

    if filtered:
        hr, tr = cat(head_ranks), cat(tail_ranks)
    else:
        hr, tr = cat(raw_head), cat(raw_tail)
    raw = None
    if also_raw:
        rh, rt = cat(raw_head), cat(raw_tail)
        raw = {"both": rank_metrics(np.concatenate([rh, rt])), "head": rank_metrics(rh), "tail": rank_metrics(rt)}
    return LinkPredictionResult(
        summary=rank_metrics(np.concatenate([hr, tr])),
        head=rank_metrics(hr),
        tail=rank_metrics(tr),
        head_ranks=hr,
        tail_ranks=tr,
        triples=triples,
        split=split,
        filtered=filtered,
        raw=raw,
        seconds=time.perf_counter() - t0,
        n_available=int(triples_all.shape[0]),
        sample_seed=SAMPLE_SEED if triples.shape[0] < triples_all.shape[0] else None,
    )
