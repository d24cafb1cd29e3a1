"""Row-wise sparse updates: a step touches only the embedding rows its batch looked up.

With dense gradients every optimiser step reads and writes every row of the user, item and
entity tables (Adam: five passes over each), so a step's cost grows with the catalogue even
though a batch touches a few thousand rows. ``train.sparse=true``:

* the *big* tables (those ``model.tables()`` names with rows of users, items or entities) are
  switched to ``nn.Embedding(sparse=True)``: their gradients are sparse COO tensors holding only
  the looked-up rows. The small K×d tables (relations, hyperplane normals, preferences) stay
  dense: they are read whole by every step anyway.
* :class:`LazyAdam` updates a row's moments and weights only when the row has a gradient (the
  "lazy Adam" of TensorFlow / ``torch.optim.SparseAdam``), and dense tables with plain Adam.
  Bias correction uses the parameter's step count, as ``SparseAdam`` does.
* weight decay is *lazy* too: a row is decayed (L2 added to its gradient) only in the steps that
  touch it, so rarely seen rows decay less than with dense Adam. With ``weight_decay=0`` (the
  default) dense and lazy Adam differ only in the moments of untouched rows.
* ``adagrad`` / ``sgd`` take sparse gradients natively in torch; weight decay is applied the same
  lazy way by :func:`add_weight_decay_` before their step.

Nothing here depends on the table sizes: a step costs O(rows touched × d).
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

def big_tables(model) -> dict[str, nn.Embedding]:
    """The model's tables whose rows are users, items or entities (they grow with the data),
    from its :meth:`~ktup.models.base.Model.tables`."""
    from ktup.models.base import BIG_KINDS

    return {name: emb for name, emb in model.table_modules().items() if model.tables()[name] in BIG_KINDS}


def enable_sparse(model) -> list[str]:
    """Switch the model's big tables to sparse gradients; returns their names.

    Only lookups (``emb(ids)``) produce sparse gradients; code reading ``emb.weight`` directly
    (full scoring in evaluation) runs under ``no_grad`` and is unaffected.
    """
    names = []
    for name, emb in big_tables(model).items():
        emb.sparse = True
        names.append(name)
    return names


def big_table_rows(model) -> int:
    """Rows of the user, item and entity tables together (what dense updates pay for per step)."""
    return sum(int(emb.num_embeddings) for emb in big_tables(model).values())


def disable_sparse(model) -> None:
    for emb in big_tables(model).values():
        emb.sparse = False


class LazyAdam(torch.optim.Optimizer):
    """Adam that updates only the rows present in a sparse gradient (dense gradients: plain Adam).

    Same update as ``torch.optim.Adam`` (L2-style weight decay added to the gradient) for the
    rows a step touches; untouched rows keep their weights and moments.
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D401 - torch's signature
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float64)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                t = float(state["step"])
                bc1, bc2 = 1.0 - b1 ** t, 1.0 - b2 ** t
                step_size = lr / bc1
                m_all, v_all = state["exp_avg"], state["exp_avg_sq"]
                if g.is_sparse:
                    g = g.coalesce()
                    idx, val = g.indices()[0], g.values()              # (R,), (R, d)
                    if wd:
                        val = val + wd * p.index_select(0, idx)
                    m = m_all.index_select(0, idx).mul_(b1).add_(val, alpha=1 - b1)
                    v = v_all.index_select(0, idx).mul_(b2).addcmul_(val, val, value=1 - b2)
                    m_all.index_copy_(0, idx, m)
                    v_all.index_copy_(0, idx, v)
                    denom = (v / bc2).sqrt_().add_(eps)
                    p.index_add_(0, idx, m / denom, alpha=-step_size)
                else:
                    if wd:
                        g = g.add(p, alpha=wd)
                    m_all.mul_(b1).add_(g, alpha=1 - b1)
                    v_all.mul_(b2).addcmul_(g, g, value=1 - b2)
                    denom = (v_all / bc2).sqrt_().add_(eps)
                    p.addcdiv_(m_all, denom, value=-step_size)
        return loss


@torch.no_grad()
def add_weight_decay_(params: Iterable[torch.Tensor], weight_decay: float) -> None:
    """Lazy L2 for optimisers that refuse weight decay with sparse gradients: ``g += wd·w`` on
    the rows each gradient holds (all rows for dense gradients)."""
    if not weight_decay:
        return
    for p in params:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            g = p.grad.coalesce()
            idx = g.indices()[0]
            p.grad = torch.sparse_coo_tensor(g.indices(), g.values() + weight_decay * p.index_select(0, idx),
                                             g.shape, is_coalesced=True, check_invariants=False)
        else:
            p.grad.add_(p, alpha=weight_decay)


@torch.no_grad()
def clip_grad_norm_(params: Iterable[torch.Tensor], max_norm: float) -> float:
    """``torch.nn.utils.clip_grad_norm_`` that also accepts sparse gradients (coalesced first so
    a row looked up twice counts once, with its summed gradient)."""
    params = [p for p in params if p.grad is not None]
    sq = []
    for p in params:
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()
            sq.append(p.grad.values().float().pow(2).sum())
        else:
            sq.append(p.grad.float().pow(2).sum())
    if not sq:
        return 0.0
    total = math.sqrt(float(torch.stack([s.to(sq[0].device) for s in sq]).sum()))
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for p in params:
            if p.grad.is_sparse:
                p.grad = p.grad * coef
            else:
                p.grad.mul_(coef)
    return total
