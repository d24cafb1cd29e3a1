"""The contract every model implements: what the trainer, evaluators, explainers, export and
serving rely on, and nothing else. Scores are *higher is better* everywhere outside the models:
translation models return the negated distance.

A model is a subclass of :class:`Model` that

* sets ``name`` (its registry name) and the flags ``uses_rec`` / ``uses_kg`` / ``explains``;
* implements :meth:`Model.build` (from the shared :class:`ktup.config.ModelConfig` and its own
  ``Options``) and :meth:`Model.tables` (its embedding tables and what their rows are);
* implements the losses and scoring methods of the tasks it has (``rec_loss``, ``score_pairs``,
  ``score_all_items`` when ``uses_rec``; ``kg_loss``, ``score_triples``, ``score_tails``,
  ``score_heads`` when ``uses_kg``);
* may override the hooks ``constrain_``, ``on_epoch_start``, ``on_epoch_end``,
  ``prepare_inference`` and ``init_from`` (all no-ops by default);
* is registered with one line in :mod:`ktup.registry` (``MODELS.register(name, "module:Class")``).

docs/EXTENDING.md has the checklist; tests/test_contract.py runs every registered model.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar, Optional

import torch
from torch import nn

#: Row kinds of a table (what :meth:`Model.tables` may name). users/items/entities tables grow
#: with the data: they get row-wise sparse updates (training/sparse.py); exports label every
#: row of a table with the original id of its kind (serving/export.py).
ROW_KINDS = ("users", "items", "entities", "relations", "preferences")
BIG_KINDS = ("users", "items", "entities")


@dataclass
class NoOptions:
    """A model without options of its own (only the shared keys of ``ModelConfig``)."""


class Model(nn.Module, metaclass=abc.ABCMeta):
    name: ClassVar[str] = "model"
    uses_rec: ClassVar[bool] = False   # has a recommendation loss and scores users × items
    uses_kg: ClassVar[bool] = False    # has a KG loss and scores (h, r) × entities
    explains: ClassVar[bool] = False   # has preference_logits / preference_relation
    #: The model's own options (a dataclass of int/float/str/bool/tuple fields with defaults),
    #: set under ``model: {NAME: {...}}`` in YAML or ``--set model.NAME.KEY=V``; read them in
    #: :meth:`build` with ``config.options_for(cls.name)``.
    Options: ClassVar[type] = NoOptions
    #: Preferences: their number (0: none) and, for explaining models, the KG relation bound to
    #: each (``None``: free preferences, labelled p0, p1, ... in exports).
    num_preferences: int = 0
    #: Width of the embeddings (recorded in exports; the evaluator's memory rule uses it).
    embedding_size: int = 0

    @property
    def preference_relation(self) -> Optional[list[int]]:
        return None

    # ------------------------------------------------------------ construction
    @classmethod
    @abc.abstractmethod
    def build(cls, config, dataset) -> "Model":
        """Build from a :class:`ktup.config.ModelConfig` and a :class:`ktup.data.KGDataset`."""

    @abc.abstractmethod
    def tables(self) -> dict[str, str]:
        """The embedding tables: ``{submodule name: row kind}`` (a kind of :data:`ROW_KINDS`).

        Each named submodule is an ``nn.Embedding`` whose row ``i`` is id ``i`` of that kind
        (extra rows after the last id, like a padding row, are allowed). Sparse updates switch
        the users/items/entities tables to sparse gradients; export writes each table with the
        original ids. Tensors not named here are exported by position and reloaded exactly.
        """

    def table_modules(self) -> dict[str, nn.Embedding]:
        """:meth:`tables` resolved to the modules themselves."""
        return {name: self.get_submodule(name) for name in self.tables()}

    # ------------------------------------------------------------------ hooks
    def on_epoch_start(self, epoch: int) -> None:
        """Called by the trainer before training epoch ``epoch`` (0-based), in training mode."""

    def on_epoch_end(self, epoch: int) -> None:
        """Called by the trainer after training epoch ``epoch`` (0-based), before it is evaluated
        (e.g. refresh attention weights computed from the current embeddings)."""

    def prepare_inference(self) -> None:
        """Called in eval mode, without autograd, whenever the weights may have changed and
        scoring follows: before every evaluation in training, after loading a run or an export.
        Compute caches the scoring methods read here (e.g. propagated embeddings)."""

    def init_from(self, other: "Model") -> Optional["Model"]:
        """Initialise from a trained model (``train.init_from``); return ``self`` when done, or
        ``None`` to let the trainer copy every tensor the two models share by name and shape."""
        return None

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
