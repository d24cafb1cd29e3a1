"""BPR-MF (Rendle et al., 2009): dot-product matrix factorisation, the plain baseline."""

from __future__ import annotations

import torch
from torch import nn

from ktup.models import functional as fn
from ktup.models.base import Model


class BPRMF(Model):
    name = "bpr"
    uses_rec = True

    def __init__(self, n_users: int, n_items: int, embedding_size: int = 64):
        super().__init__()
        self.n_users, self.n_items, self.embedding_size = n_users, n_items, embedding_size
        self.user = nn.Embedding(n_users, embedding_size)
        self.item = nn.Embedding(n_items, embedding_size)
        for emb in (self.user, self.item):
            fn.xavier_normalised_(emb.weight)

    @classmethod
    def build(cls, config, dataset) -> "BPRMF":
        return cls(dataset.n_users, dataset.n_items, config.embedding_size)

    def tables(self) -> dict[str, str]:
        return {"user": "users", "item": "items"}

    def rec_loss(self, users, pos_items, neg_items) -> torch.Tensor:
        u = self.user(self._ids(users))                       # (B, d)
        pos_i, neg = self._ids(pos_items), self._ids(neg_items)
        B = pos_i.shape[0]
        items = self.item(torch.cat([pos_i, neg.reshape(-1)]))   # one gather: (B + B·n_neg, d)
        return fn.bpr_loss_dot(u, items[:B], items[B:].reshape(*neg.shape, -1))

    def score_pairs(self, users, items) -> torch.Tensor:
        return (self.user(self._ids(users)) * self.item(self._ids(items))).sum(-1)

    def score_all_items(self, users, items=None) -> torch.Tensor:
        I = self.item.weight if items is None else self.item(self._ids(items))
        return self.user(self._ids(users)) @ I.T
