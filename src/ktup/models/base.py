"""The small interface every model implements (the contract the trainer, evaluators and
explainers rely on). Scores are *higher is better* everywhere outside the models: translation
models return the negated distance.
"""

from __future__ import annotations

from typing import ClassVar, Optional

import torch
from torch import nn


class Model(nn.Module):
    name: ClassVar[str] = "model"
    uses_rec: ClassVar[bool] = False   # has a recommendation loss and scores users × items
    uses_kg: ClassVar[bool] = False    # has a KG loss and scores (h, r) × entities
    explains: ClassVar[bool] = False   # has preference_logits / preference_relation

    # ------------------------------------------------------------ construction
    @classmethod
    def build(cls, config, dataset) -> "Model":
        """Build from a :class:`ktup.config.ModelConfig` and a :class:`ktup.data.KGDataset`."""
        raise NotImplementedError

    def _ids(self, x) -> torch.Tensor:
        """Ids (tensor, array or list) as int64 on the model's device: callers may pass CPU
        or numpy ids to a model living on a GPU."""
        device = next(iter(self.parameters())).device
        if torch.is_tensor(x):
            return x.to(device=device, dtype=torch.long)
        return torch.as_tensor(x, dtype=torch.long, device=device)

    # ------------------------------------------------------------------ losses
    def rec_loss(self, users: torch.Tensor, pos_items: torch.Tensor, neg_items: torch.Tensor) -> torch.Tensor:
        """Scalar loss; users, pos_items (B,), neg_items (B,) or (B, n_neg)."""
        raise NotImplementedError(f"{self.name} has no recommendation loss")

    def kg_loss(self, heads, relations, tails, neg_heads, neg_tails) -> torch.Tensor:
        """Scalar loss for positive triples (B,) and their corruptions (B,) or (B, n_neg)."""
        raise NotImplementedError(f"{self.name} has no KG loss")

    def constrain_(self) -> None:
        """Hard constraints applied after each optimiser step (e.g. renormalising rows)."""

    # ------------------------------------------------------------------ scores
    def score_pairs(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(B,) scores of (user, item) pairs; higher is better; deterministic in eval mode."""
        raise NotImplementedError(f"{self.name} does not score users and items")

    def score_all_items(self, users: torch.Tensor, items: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, N) scores of users against all items (or the given item chunk): the fast path."""
        raise NotImplementedError(f"{self.name} does not score users and items")

    def score_triples(self, heads, relations, tails) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} does not score triples")

    def score_tails(self, heads: torch.Tensor, relations: torch.Tensor, entities: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, E) scores of (h, r, ?) against all entities (or the given entity chunk)."""
        raise NotImplementedError(f"{self.name} does not score triples")

    def score_heads(self, relations: torch.Tensor, tails: torch.Tensor, entities: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, E) scores of (?, r, t) against all entities (or the given entity chunk)."""
        raise NotImplementedError(f"{self.name} does not score triples")


def describe_load_error(e: BaseException, limit: int = 3) -> str:
    """One line from torch's multi-line ``load_state_dict`` error, whose first line ("Error(s) in
    loading state_dict for KTUP:") says nothing: the first ``limit`` problems, shapes as lists."""
    import re

    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    if lines and lines[0].startswith("Error(s) in loading state_dict"):
        lines = lines[1:]
    out = []
    for line in lines:
        m = re.match(r"size mismatch for (\S+): copying a param with shape torch\.Size\((\[.*?\])\) from checkpoint, "
                     r"the shape in current model is torch\.Size\((\[.*?\])\)", line)
        if m:
            out.append(f"{m[1]} is {m[2]} in the file but {m[3]} in the model")
            continue
        m = re.match(r"(Missing|Unexpected) key\(s\) in state_dict: (.*)", line)
        if m:
            keys = [k.strip().strip('"') for k in m[2].rstrip(". ").split(",") if k.strip()]
            shown = ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")
            out.append(f"{'missing' if m[1] == 'Missing' else 'unexpected'} {shown}")
            continue
        out.append(line.rstrip(". "))
    text = "; ".join(out[:limit]) + (f"; and {len(out) - limit} more" if len(out) > limit else "")
    return text or type(e).__name__
