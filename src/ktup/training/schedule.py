"""Joint-training schedules: which task each optimiser step of an epoch trains.

Everything here is a pure function of (epoch, sizes, config) so a resumed run replays exactly
the steps an uninterrupted one would.

- ``step``: interleave rec and KG steps in the ratio λ : (1 − λ) with a fixed pattern (λ = 0.7 →
  out of every 10 steps 7 rec, 3 KG; rec steps first within each cycle). An epoch is one pass
  over the rec interactions with KG batches interleaved in proportion.
- ``epoch``: RecBole's alternation: ``rec_epochs`` rec epochs, then ``kg_epochs`` KG epochs.
- ``sum``: one step per rec batch on ``λ L_rec + (1 − λ) L_kg`` of a paired KG batch.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

REC, KG, SUM = 0, 1, 2
KIND_NAMES = {REC: "rec", KG: "kg", SUM: "sum"}


def lambda_fraction(lam: float) -> Fraction:
    """λ as a small fraction p/q so the pattern is exact (0.7 → 7/10)."""
    return Fraction(lam).limit_denominator(100)


def step_pattern(n_rec: int, lam: float) -> np.ndarray:
    """Kinds (REC/KG, int8) of the steps of one ``step``-schedule epoch with ``n_rec`` rec batches.

    Step s is a rec step iff ``ceil((s+1)·λ) − ceil(s·λ) = 1``: every window of q steps (λ = p/q)
    holds exactly p rec steps and rec steps lead each window. The epoch holds all ``n_rec`` rec
    steps and ``round(n_rec·(1−λ)/λ)`` KG steps.
    """
    frac = lambda_fraction(lam)
    p, q = frac.numerator, frac.denominator
    if p == 0:
        return np.zeros(0, dtype=np.int8)  # no rec at all: caller runs a KG pass instead
    if p == q:
        return np.full(n_rec, REC, dtype=np.int8)
    n_kg = int(round(n_rec * (q - p) / p))
    total = n_rec + n_kg
    s = np.arange(total + q, dtype=np.int64)
    ceil_prev = -((-s * p) // q)
    ceil_next = -((-(s + 1) * p) // q)
    is_rec = (ceil_next - ceil_prev) == 1                      # (total + q,)
    kinds = np.where(is_rec, REC, KG).astype(np.int8)
    # Cut where the n_rec-th rec step falls, then top the KG steps up to n_kg.
    last_rec = int(np.flatnonzero(is_rec)[n_rec - 1]) if n_rec > 0 else -1
    kinds = kinds[:last_rec + 1]
    missing = n_kg - int((kinds == KG).sum())
    if missing > 0:
        kinds = np.concatenate([kinds, np.full(missing, KG, dtype=np.int8)])
    elif missing < 0:  # only when rounding leaves fewer KG steps than the pattern placed
        kg_pos = np.flatnonzero(kinds == KG)
        kinds = np.delete(kinds, kg_pos[missing:])
    return kinds


def epoch_plan(epoch: int, n_rec: int, n_kg_pass: int, uses_rec: bool, uses_kg: bool, train_cfg) -> np.ndarray:
    """Kinds (REC, KG or SUM) of every optimiser step of ``epoch`` (0-based).

    ``n_rec``: rec batches in one pass over the interactions; ``n_kg_pass``: KG batches in one
    pass over the training triples.
    """
    if uses_rec and not uses_kg:
        return np.full(n_rec, REC, dtype=np.int8)
    if uses_kg and not uses_rec:
        return np.full(n_kg_pass, KG, dtype=np.int8)
    lam = float(train_cfg.joint_lambda)
    schedule = train_cfg.schedule
    if schedule == "epoch":
        cycle = train_cfg.rec_epochs + train_cfg.kg_epochs
        if epoch % cycle < train_cfg.rec_epochs:
            return np.full(n_rec, REC, dtype=np.int8)
        return np.full(n_kg_pass, KG, dtype=np.int8)
    if lam <= 0.0:
        return np.full(n_kg_pass, KG, dtype=np.int8)
    if lam >= 1.0:
        return np.full(n_rec, REC, dtype=np.int8)
    if schedule == "sum":
        return np.full(n_rec, SUM, dtype=np.int8)
    return step_pattern(n_rec, lam)


def n_batches(n: int, batch_size: int) -> int:
    return int(math.ceil(n / batch_size)) if n > 0 else 0


def joint_loss(model, rec_args, kg_args, lam: float, kg_weight: float = 1.0):
    """``(loss, rec_loss, kg_loss)`` of one step: the rec loss, ``kg_weight ·`` the KG loss, or —
    when both batches are given (``sum`` steps) — ``lam · rec + (1 − lam) · kg_weight · kg``. The
    one place the joint losses are combined, for the single-process trainer and the DDP forward
    alike. ``kg_loss`` is returned unweighted (what the logs report)."""
    rec = model.rec_loss(*rec_args) if rec_args is not None else None
    kg = model.kg_loss(*kg_args) if kg_args is not None else None
    wkg = kg if kg is None or kg_weight == 1.0 else kg_weight * kg
    if rec is not None and wkg is not None:
        return lam * rec + (1.0 - lam) * wkg, rec, kg
    return (rec if rec is not None else wkg), rec, kg
