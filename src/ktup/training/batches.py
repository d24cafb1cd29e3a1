"""Batches for one epoch, derived only from (seed, epoch) so a resumed run replays them exactly.

Randomness layout: every epoch gets fresh ``torch.Generator`` objects seeded from
``SeedSequence([seed, epoch, stream])`` — one for rec shuffling + negative items, one for
corrupted triples — and the global RNGs are reseeded the same way (Gumbel noise, dropout).
KG triples are consumed as a stream of passes that runs across epochs (the ``step`` schedule
uses less than a pass per epoch): pass P is shuffled by ``SeedSequence([seed, KG_PASS, P])`` and
the stream position is part of the checkpoint.
"""

from __future__ import annotations

import random

import numpy as np
import torch

REC_STREAM, KG_NEG_STREAM, GLOBAL_STREAM, KG_PASS_STREAM = 0, 1, 2, 3


def derived_seed(*key: int) -> int:
    """A 63-bit seed from integer keys (stable across runs, platforms and Python hash seeds)."""
    return int(np.random.SeedSequence([int(k) for k in key]).generate_state(2, dtype=np.uint32)
               .astype(np.uint64).dot(np.array([1 << 31, 1], dtype=np.uint64)))


def make_generator(seed: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def seed_globals(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2 ** 32))
    random.seed(seed)


class EpochRandom:
    """The generators of one epoch."""

    def __init__(self, seed: int, epoch: int, device: torch.device):
        self.rec = make_generator(derived_seed(seed, epoch, REC_STREAM), device)
        self.kg = make_generator(derived_seed(seed, epoch, KG_NEG_STREAM), device)
        seed_globals(derived_seed(seed, epoch, GLOBAL_STREAM))

    def state(self) -> dict:
        return {"rec": self.rec.get_state(), "kg": self.kg.get_state()}


class KGStream:
    """Training triples as an endless sequence of shuffled passes; batch j is a pure function of j."""

    def __init__(self, triples: torch.Tensor, batch_size: int, seed: int):
        self.triples = triples                     # (n, 3) int64 on the training device
        self.batch_size = batch_size
        self.seed = seed
        n = int(triples.shape[0])
        self.batches_per_pass = (n + batch_size - 1) // batch_size if n else 0
        self._perm_pass = -1
        self._perm: torch.Tensor | None = None

    def _pass_perm(self, p: int) -> torch.Tensor:
        if p != self._perm_pass:
            g = make_generator(derived_seed(self.seed, KG_PASS_STREAM, p), self.triples.device)
            self._perm = torch.randperm(self.triples.shape[0], generator=g, device=self.triples.device)
            self._perm_pass = p
        return self._perm

    def batch(self, j: int) -> torch.Tensor:
        """(B, 3) triples of global KG batch ``j``."""
        p, off = divmod(j, self.batches_per_pass)
        perm = self._pass_perm(p)
        return self.triples[perm[off * self.batch_size:(off + 1) * self.batch_size]]

