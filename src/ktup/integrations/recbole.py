"""Our KTUP as a RecBole 1.2.1 model: a drop-in for ``recbole.model.knowledge_aware_recommender.KTUP``.

RecBole's own data loaders, negative samplers, ``KGTrainer`` (alternating recommendation and KG
epochs, ``train_rec_step`` / ``train_kg_step``) and evaluator drive :class:`ktup.models.KTUP`;
only the model differs, with the fixes of docs/MODEL.md: deterministic inference (argmax, no
Gumbel noise), unit hyperplane normals, ``p̃ = p + r`` (sum), normalised item rows, no
item/entity alignment loss by default, and a real vectorised ``full_sort_predict``.

Usage (RecBole 1.2.1's ``run_recbole`` looks a model up by *name*, which would find RecBole's
own KTUP, so use the ``run_recbole`` below, which takes the class)::

    from ktup.integrations.recbole import KTUP, run_recbole
    result = run_recbole(model=KTUP, dataset="ml-100k", config_dict={"epochs": 50})
    print(result["test_result"])

RecBole's config keys for KTUP keep their meaning (``embedding_size``, ``L1_flag`` → L1 vs
squared L2, ``use_st_gumbel`` → hard vs soft induction, ``margin``, ``kg_weight``,
``align_weight``); ``ktup_*`` keys reach our options and win over them: ``ktup_induction``
(soft|hard|expected), ``ktup_inference`` (induced|expected), ``ktup_norm`` (l1|l2), ``ktup_combine`` (sum|mean), ``ktup_unit_normals``,
``ktup_align_loss``, ``ktup_kg_constraint_weight``, ``ktup_gumbel_temperature``.

Id spaces: RecBole's ``KnowledgeBasedDataset`` remaps items and entities into one space, so a
linked item's id *is* its entity's id, while unlinked items (and the ``[PAD]`` item 0) get
"virtual" entity ids that appear in no triple. We keep RecBole's entity ids as ours
(``n_entities = dataset.entity_num``) and link item ``i`` to entity ``i`` exactly when RecBole's
``.link`` file links it; unlinked items use our zero padding entity. RecBole's relation field
holds ``[PAD]`` (id 0) and the auxiliary ``[UI-Relation]`` (last) besides the KG's relations;
our K preferences are bound to the KG relations only (RecBole id ``r`` ↔ ours ``r - 1``).

This module imports RecBole; the core package never imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

try:
    from recbole.model.abstract_recommender import KnowledgeRecommender
    from recbole.utils import InputType
except ImportError as exc:  # pragma: no cover - exercised only without RecBole
    raise ImportError(
        "ktup.integrations.recbole needs RecBole 1.2.1 (see benchmarks/peers/recbole/setup.sh "
        "for a minimal install: torch==2.13.0, then recbole==1.2.1 --no-deps and its few run-time needs)"
    ) from exc

from ktup.config import INDUCTIONS, INFERENCES
from ktup.errors import ConfigError, KtupError
from ktup.models.tup import KTUP as _CoreKTUP

__all__ = ["KTUP", "RecBoleKGMapping", "kg_mapping", "model_options", "run_recbole"]

PAD_TOKEN = "[PAD]"
UI_RELATION_TOKEN = "[UI-Relation]"


@dataclass
class RecBoleKGMapping:
    """How a RecBole KG dataset's ids map onto our model's.

    ``item_entity`` (n_items,) int64: our entity id of each RecBole item (= the item id for
    linked items) or -1. ``relation_to_ours`` (relation_num,) int64: our relation id of each
    RecBole relation id, -1 for ``[PAD]`` and ``[UI-Relation]``. ``relation_tokens``: RecBole's
    token of each of our relations (the explanation of preference k).
    """

    n_users: int
    n_items: int
    n_entities: int
    item_entity: np.ndarray
    relation_to_ours: np.ndarray
    relation_tokens: list[str]

    @property
    def n_relations(self) -> int:
        return len(self.relation_tokens)


def kg_mapping(dataset) -> RecBoleKGMapping:
    """Read the id spaces of a RecBole ``KnowledgeBasedDataset`` (see the module docstring)."""
    uid, iid = dataset.uid_field, dataset.iid_field
    ent_field, rel_field = dataset.entity_field, dataset.relation_field
    item_tokens = np.asarray(dataset.field2id_token[iid])
    entity_ids = dataset.field2token_id[ent_field]
    item_entity = np.full(len(item_tokens), -1, dtype=np.int64)
    for i, tok in enumerate(item_tokens):          # one-time setup over items, not a hot path
        ent_tok = dataset.item2entity.get(tok)
        if ent_tok is not None and ent_tok in entity_ids:
            item_entity[i] = entity_ids[ent_tok]
    linked = item_entity >= 0
    if not np.array_equal(item_entity[linked], np.flatnonzero(linked)):
        raise KtupError("RecBole dataset: linked items do not share their entity's id "
                        "(not a RecBole 1.2.1 KnowledgeBasedDataset?)")
    rel_tokens = [str(t) for t in dataset.field2id_token[rel_field]]
    relation_to_ours = np.full(len(rel_tokens), -1, dtype=np.int64)
    ours: list[str] = []
    for rid, tok in enumerate(rel_tokens):
        if tok in (PAD_TOKEN, UI_RELATION_TOKEN):
            continue
        relation_to_ours[rid] = len(ours)
        ours.append(tok)
    if not ours:
        raise KtupError("RecBole dataset: the knowledge graph has no relations (load the .kg file)")
    return RecBoleKGMapping(n_users=dataset.num(uid), n_items=len(item_tokens), n_entities=dataset.num(ent_field),
                            item_entity=item_entity, relation_to_ours=relation_to_ours, relation_tokens=ours)


def _choice(config, key: str, allowed: tuple[str, ...], default: str) -> str:
    value = config[key]
    if value is None:
        return default
    if value not in allowed:
        raise ConfigError(f"{key}: must be one of {', '.join(allowed)}, got {value!r}")
    return str(value)


OUR_KEYS = ("ktup_induction", "ktup_inference", "ktup_norm", "ktup_combine", "ktup_unit_normals", "ktup_align_loss",
            "ktup_kg_constraint_weight", "ktup_gumbel_temperature")


def model_options(config) -> dict[str, Any]:
    """Keyword options of :class:`ktup.models.KTUP` from a RecBole config (module docstring).
    A misspelt ``ktup_*`` key is an error, not silently ignored as RecBole does with its own keys."""
    unknown = sorted(k for k in getattr(config, "final_config_dict", {}) if k.startswith("ktup_") and k not in OUR_KEYS)
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown key (known: {', '.join(OUR_KEYS)})")
    l1 = config["L1_flag"]
    gumbel = config["use_st_gumbel"]
    norm_default = "l1" if l1 is None else ("l1" if l1 else "l2")
    induction_default = "soft" if gumbel is None else ("hard" if gumbel else "soft")

    def flag(key: str, default: bool) -> bool:
        value = config[key]
        return default if value is None else bool(value)

    def number(key: str, default: float) -> float:
        value = config[key]
        return default if value is None else float(value)

    return {
        "induction": _choice(config, "ktup_induction", INDUCTIONS, induction_default),
        "inference": _choice(config, "ktup_inference", INFERENCES, "induced"),
        "norm": _choice(config, "ktup_norm", ("l1", "l2"), norm_default),
        "combine": _choice(config, "ktup_combine", ("sum", "mean"), "sum"),
        "unit_normals": flag("ktup_unit_normals", True),
        "align_loss": flag("ktup_align_loss", False),
        "align_weight": number("align_weight", 1.0),
        "margin": number("margin", 1.0),
        "kg_constraint_weight": number("ktup_kg_constraint_weight", 0.01),
        "gumbel_temperature": number("ktup_gumbel_temperature", 1.0),
    }


class KTUP(KnowledgeRecommender):
    """RecBole model class ``(config, dataset)`` wrapping :class:`ktup.models.KTUP` (``self.ktup``).

    Named ``KTUP`` so RecBole's config machinery loads its KTUP defaults
    (``properties/model/KTUP.yaml``: ``train_rec_step``/``train_kg_step`` 5, ``L1_flag`` False,
    ``use_st_gumbel`` True, ...) and picks ``KGTrainer``; import it under another name
    (``from ktup.integrations.recbole import KTUP as KtupKTUP``) next to RecBole's.
    """

    input_type = InputType.PAIRWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.mapping = kg_mapping(dataset)
        self.kg_weight = 1.0 if config["kg_weight"] is None else float(config["kg_weight"])
        m = self.mapping
        self.ktup = _CoreKTUP(m.n_users, m.n_items, m.n_entities, m.n_relations, m.item_entity,
                              int(config["embedding_size"] or 64), **model_options(config))
        self.register_buffer("relation_to_ours", torch.as_tensor(m.relation_to_ours), persistent=False)
        self._constraints_due = False

    # ------------------------------------------------------------------ helpers
    def _ids(self, interaction, field: str) -> torch.Tensor:
        return interaction[field].long()

    def _apply_constraints(self) -> None:
        """RecBole's trainer has no post-step hook: apply ``constrain_`` lazily, before the next
        forward after a training step, which is the same as right after that step."""
        if self._constraints_due:
            self.ktup.constrain_()
            self._constraints_due = False

    # ------------------------------------------------------------------ RecBole API
    def forward(self, user: torch.Tensor, item: torch.Tensor):
        """``(u⊥, p*, ĩ⊥)`` as RecBole's KTUP returns them (see ``RecBoleInterface.forward``)."""
        self._apply_constraints()
        return self.ktup.forward(user, item)

    def calculate_loss(self, interaction) -> torch.Tensor:
        """BPR loss of (user, positive, sampled negative) — a recommendation step."""
        self._apply_constraints()
        loss = self.ktup.rec_loss(self._ids(interaction, self.USER_ID), self._ids(interaction, self.ITEM_ID),
                                  self._ids(interaction, self.NEG_ITEM_ID))
        self._constraints_due = True
        return loss

    def calculate_kg_loss(self, interaction) -> torch.Tensor:
        """TransH margin loss of (h, r, t) against RecBole's corrupted tails — a KG step."""
        self._apply_constraints()
        h = self._ids(interaction, self.HEAD_ENTITY_ID)
        r = self.relation_to_ours[self._ids(interaction, self.RELATION_ID)]
        t = self._ids(interaction, self.TAIL_ENTITY_ID)
        neg_t = self._ids(interaction, self.NEG_TAIL_ENTITY_ID)
        if bool((r < 0).any()):
            raise KtupError("KG batch holds [PAD] or [UI-Relation] triples (kg_reverse_r / custom KG fields?)")
        loss = self.kg_weight * self.ktup.kg_loss(h, r, t, h, neg_t)
        self._constraints_due = True
        return loss

    def predict(self, interaction) -> torch.Tensor:
        """(B,) scores of (user, item) pairs, higher is better, deterministic."""
        self._apply_constraints()
        return self.ktup.score_pairs(self._ids(interaction, self.USER_ID), self._ids(interaction, self.ITEM_ID))

    def full_sort_predict(self, interaction) -> torch.Tensor:
        """(B · n_items,) scores of each user against all items, by the decomposed fast path."""
        self._apply_constraints()
        return self.ktup.score_all_items(self._ids(interaction, self.USER_ID)).reshape(-1)

    # ------------------------------------------------------------------ explanations
    @property
    def preference_relation_tokens(self) -> list[str]:
        """RecBole relation token bound to each preference (our preference k = RecBole id k + 1)."""
        return list(self.mapping.relation_tokens)

    @torch.no_grad()
    def induced_relations(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(B,) RecBole relation ids of the preference each (user, item) pair induces (argmax)."""
        logits = self.ktup.preference_logits(users.long(), items.long())       # (B, K)
        ours = logits.argmax(-1)
        back = torch.as_tensor(np.flatnonzero(self.mapping.relation_to_ours >= 0), device=ours.device)
        return back[ours]


def _load_best(trainer) -> None:
    """Load the best-valid checkpoint RecBole saved. RecBole 1.2.1 reloads it with torch.load's
    default, which torch >= 2.6 restricts to weights and which rejects the pickled config
    inside; the file was just written by this process, so it is loaded in full."""
    checkpoint = torch.load(trainer.saved_model_file, map_location=trainer.device, weights_only=False)
    trainer.model.load_state_dict(checkpoint["state_dict"])
    trainer.model.load_other_parameter(checkpoint.get("other_parameter"))


def run_recbole(model: Optional[type] = None, dataset: Optional[str] = None, config_file_list=None,
                config_dict: Optional[dict] = None, saved: bool = True) -> dict[str, Any]:
    """RecBole's quick start for a model *class* (default: our :class:`KTUP`): configure, build
    RecBole's dataset and loaders, train with RecBole's trainer, test the best-valid model.
    Returns RecBole's result dict (``best_valid_score``, ``best_valid_result``, ``test_result``, ...)."""
    from logging import getLogger

    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_trainer, init_logger, init_seed

    model_cls = model or KTUP
    config = Config(model=model_cls, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    logger.info(config)
    data = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, data)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    net = model_cls(config, train_data._dataset).to(config["device"])
    logger.info(net)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
    best_valid_score, best_valid_result = trainer.fit(train_data, valid_data, saved=saved,
                                                      show_progress=config["show_progress"])
    if saved:
        _load_best(trainer)
    test_result = trainer.evaluate(test_data, load_best_model=False, show_progress=config["show_progress"])
    logger.info(f"best valid : {best_valid_result}")
    logger.info(f"test result: {test_result}")
    return {
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
    }
