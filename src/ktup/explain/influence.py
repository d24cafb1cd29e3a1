"""How much each history item holds up a pair's score: the order in which explanations cite them.

A preference model reads a user's history only through the user row ``u`` it fitted on it; a
training step on history item j moves ``u`` along ``∇_u s(u, j)``. The first-order influence of
j on the score of item i is therefore ``∇_u s(u, i) · ∇_u s(u, j)`` (positive: j's training
raised i's score, so removing j and re-fitting lowers it). Explanations list the history items
on the named relation's KG paths in this order and leave out those with influence ≤ 0
(benchmarks/explain_deletion_history.py measures the deletion this predicts). One autograd
call per explanation, rows batched (each row its own copy of u).
"""

from __future__ import annotations

import numpy as np
import torch


def history_influence(model, u: int, item: int, history: np.ndarray) -> np.ndarray | None:
    """(len(history),) influence of each history item on the score of ``item`` for user ``u``;
    None for a model without a user table and pair scorer (the caller keeps its own order)."""
    if not (hasattr(model, "user") and hasattr(model, "_pair_vec") and hasattr(model, "item_vectors")):
        return None
    history = np.asarray(history, dtype=np.int64)
    if history.shape[0] == 0:
        return np.zeros(0)
    with torch.enable_grad():
        dev = model.user.weight.device
        items = torch.as_tensor(np.concatenate([[item], history]), device=dev)
        U = model.user.weight.detach()[u].repeat(items.shape[0], 1).requires_grad_(True)
        s = -model._pair_vec(U, model.item_vectors(items).detach(), noisy=False)[3]
        g, = torch.autograd.grad(s.sum(), U)
    return (g[1:] @ g[0]).double().cpu().numpy()
