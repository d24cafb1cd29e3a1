"""The user-facing recommender: top-k lists, explanations and scores in original ids.

Everything returned is plain data (lists, dicts, floats, strings) so the CLI, the HTTP service
and notebooks can print or serialise it directly. Ranking is the evaluator's own core
(:func:`ktup.evaluation.ranking.top_k_items`): users are scored against all items in chunks
with ``model.score_all_items``, items the user already interacted with are masked to −inf, and
the list is picked with the same seeded tie policy, so ``recommend`` and ``evaluate`` rank alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import torch

from ktup.data.dataset import Interactions, KGDataset
from ktup.errors import KtupError
from ktup.evaluation.ranking import top_k_items
from ktup.evaluation.topk import DEFAULT_TIE_SEED
from ktup.explain.evidence import EvidenceIndex
from ktup.explain.latent import LatentRelations
from ktup.explain.names import display_title
from ktup.models.base import Model

_ALL_SPLITS = ("train", "valid", "test")
EVIDENCE_STEPS = ("latent-class", "kg-support")


def _is_scalar_id(x: Any) -> bool:
    return isinstance(x, (str, bytes, int, np.integer))


class Recommender:
    """Recommend and explain with a trained model.

    ``seen_splits``: the interactions that count as the user's history — masked from
    recommendations when ``filter_seen`` and used as KG evidence in explanations. Default: all
    of the run's interactions (train, valid and test), since a user has seen every one of them;
    pass ``("train",)`` to study held-out interactions without leakage.

    ``evidence_step``: how an explanation names its relation among those with a KG path to the
    history — ``"latent-class"`` (default: the posterior of a latent-class model of the user's
    history over KG relations, :mod:`ktup.explain.latent`, fitted on the ``seen_splits``
    interactions, one user on first use) or ``"kg-support"`` (model weight × KG support).
    """

    def __init__(
        self,
        model,
        dataset: KGDataset,
        *,
        device: str | torch.device = "cpu",
        seen_splits: Sequence[str] = _ALL_SPLITS,
        memory_budget_mb: int = 256,
        run=None,
        tie_seed: int = DEFAULT_TIE_SEED,
        evidence_step: str = "latent-class",
    ):
        if evidence_step not in EVIDENCE_STEPS:
            raise KtupError(f"unknown evidence_step {evidence_step!r} ({', '.join(EVIDENCE_STEPS)})")
        self.evidence_step = evidence_step
        for s in seen_splits:
            if s not in _ALL_SPLITS:
                raise KtupError(f"unknown split {s!r} in seen_splits (train, valid, test)")
        self.model = model
        self.dataset = dataset
        self.device = torch.device(device)
        self.run = run
        self.seen_splits = tuple(seen_splits)
        self.memory_budget_mb = int(memory_budget_mb)
        self.tie_seed = int(tie_seed)
        self.model.eval()
        if isinstance(model, Model):       # duck-typed scorers (tests, adapters) have no hooks
            with torch.no_grad():
                model.prepare_inference()
        seen = Interactions.concat([dataset.split(s) for s in self.seen_splits])
        self._seen_indptr, self._seen_items = seen.csr()      # (U+1,), (n,) sorted per user
        self._evidence: Optional[EvidenceIndex] = None
        self._latent: Optional[LatentRelations] = None

    # ----------------------------------------------------------------- building
    @classmethod
    def load(cls, run_dir: str | Path, checkpoint: str = "best", device: str = "cpu", **kwargs) -> "Recommender":
        """Open a run directory written by ``ktup train`` (its exact split, config and weights)."""
        from ktup.runs import load_run

        run = load_run(run_dir, checkpoint=checkpoint, device=device)
        return cls(run.model, run.dataset, device=device, run=run, **kwargs)

    @property
    def model_name(self) -> str:
        return str(getattr(self.model, "name", type(self.model).__name__))

    @property
    def evidence(self) -> EvidenceIndex:
        """The KG evidence index, built on first use (a fraction of a second on ml-100k)."""
        if self._evidence is None:
            d = self.dataset
            self._evidence = EvidenceIndex(d.kg_all, d.item_entity, d.n_entities)
        return self._evidence

    @property
    def latent(self) -> LatentRelations:
        """The latent-class evidence step over the history (built once; users fitted on first use)."""
        if self._latent is None:
            self._latent = LatentRelations(self.evidence, self._seen_indptr, self._seen_items)
        return self._latent

    # ------------------------------------------------------------------- ids
    def _user_ids(self, users: Any) -> np.ndarray:
        if _is_scalar_id(users):
            users = [users]
        return self.dataset.users.lookup(list(users))

    def _item_ids(self, items: Any) -> np.ndarray:
        if _is_scalar_id(items):
            items = [items]
        return self.dataset.items.lookup(list(items))

    def history(self, user: int) -> np.ndarray:
        """Internal item ids in the user's history (``seen_splits``), sorted."""
        return self._seen_items[self._seen_indptr[user]:self._seen_indptr[user + 1]]

    # ------------------------------------------------------------- ranking core
    def top_k(
        self,
        users: np.ndarray,
        k: int = 10,
        filter_seen: bool = True,
        exclude: Optional[np.ndarray] = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised top-k for internal user ids: ``(items (U, k) int64, scores (U, k) float32)``.

        Slots with no eligible item left (k larger than the candidate set) hold item −1 and
        score −inf. Ties go in the evaluator's seeded per-user order (``tie_seed``).
        """
        users = np.asarray(users, dtype=np.int64)
        items, scores = top_k_items(
            self.model, users, k, self.dataset.n_items,
            seen=(self._seen_indptr, self._seen_items) if filter_seen else None, exclude=exclude,
            user_batch_size=1024, memory_budget_mb=self.memory_budget_mb, tie_seed=self.tie_seed)
        return items.numpy(), scores.numpy()

    def recommend(
        self,
        users: Any,
        k: int = 10,
        filter_seen: bool = True,
        exclude: Optional[Iterable[Any]] = None,
        explain: bool = False,
    ) -> list:
        """Top-``k`` items for one user (original id) or many (a list of original ids).

        One user → a list of ``{"item", "title", "display_title", "score", "rank"}`` dicts, best first
        (``title`` as the data has it, ``display_title`` with a trailing article put back in front); a list of
        users → a list of such lists in the same order. ``filter_seen`` drops the user's known
        interactions; ``exclude`` (original item ids) drops items for everyone; ``explain`` adds
        each item's explanation under ``"explanation"``.
        """
        if k < 0:
            raise KtupError(f"k must be >= 0, got {k}")
        single = _is_scalar_id(users)
        uids = self._user_ids(users)
        excl = None if exclude is None else self._item_ids(exclude if _is_scalar_id(exclude) else list(exclude))
        top_i, top_s = self.top_k(uids, k=k, filter_seen=filter_seen, exclude=excl)
        lists = []
        for row, u in enumerate(uids.tolist()):
            recs = []
            for rank, (i, s) in enumerate(zip(top_i[row].tolist(), top_s[row].tolist()), start=1):
                if i < 0:
                    break
                title = self.dataset.item_title(i)
                rec = {"item": self.dataset.items.token(i), "title": title, "display_title": display_title(title),
                       "score": float(s), "rank": rank}
                if explain:
                    rec["explanation"] = self._explain_ids(u, i)
                recs.append(rec)
            lists.append(recs)
        return lists[0] if single else lists

    @torch.no_grad()
    def score(self, users: Any, items: Any) -> list[float]:
        """Scores of (user, item) pairs given by original ids (broadcast: one user, many items)."""
        u = self._user_ids(users)
        i = self._item_ids(items)
        if u.shape[0] == 1 and i.shape[0] > 1:
            u = np.repeat(u, i.shape[0])
        if i.shape[0] == 1 and u.shape[0] > 1:
            i = np.repeat(i, u.shape[0])
        if u.shape[0] != i.shape[0]:
            raise KtupError(f"score: {u.shape[0]} users and {i.shape[0]} items; give as many of each (or one of either)")
        s = self.model.score_pairs(torch.as_tensor(u, device=self.device), torch.as_tensor(i, device=self.device))
        return [float(x) for x in s.float().cpu().tolist()]

    # ------------------------------------------------------------- explaining
    def explain(self, user: Any, item: Any) -> dict:
        """Why ``item`` suits ``user``: preference weights, KG evidence, strength (plain data).

        Raises :class:`KtupError` for a model without preferences (bpr, transh).
        """
        u = int(self._user_ids(user)[0])
        i = int(self._item_ids(item)[0])
        return self._explain_ids(u, i)

    def _explain_ids(self, u: int, i: int) -> dict:
        from ktup.explain.explanation import build_explanation

        if not getattr(self.model, "explains", False):
            raise KtupError(f"explanations are unavailable for {self.model_name}: it has no preferences")
        return build_explanation(self, u, i)
