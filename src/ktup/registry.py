"""Registries: the one place each kind of name lives (models, optimisers, schedules, samplers,
splits, metrics, protocols).

A :class:`Registry` maps a name to its object (a class, a factory, a constant) or to a lazy
``"module:attribute"`` string imported on first use, so this module imports neither torch nor
any model: the CLI validates ``--model`` and every other name before torch is loaded. Config
validation, ``--help`` texts and error messages all ask a registry (:meth:`Registry.choices`,
:meth:`Registry.check`, :meth:`Registry.help`); no list of names is written anywhere else.

Adding an entry is one line below (``MODELS.register("cke", "ktup.models.cke:CKE", ...)``); the
contract tests (tests/test_contract.py) pick every registered model up by themselves.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Iterator, Optional

from ktup.errors import ConfigError


class Registry(Mapping):
    """Names → objects of one kind, in registration order.

    ``kind`` names the kind in messages (``"model"``); ``key`` is the config key the name is
    given under (``"model.model"``), used as the prefix of one-line errors. A registry is a
    read-only mapping: ``reg[name]`` resolves (imports) the entry, ``list(reg)`` gives the names.
    """

    def __init__(self, kind: str, key: str):
        self.kind, self.key = kind, key
        self._targets: dict[str, Any] = {}
        self._help: dict[str, str] = {}

    # ------------------------------------------------------------ registering
    def register(self, name: str, target: Any = None, *, help: str = "") -> Any:
        """Add ``name``; ``target`` is the object or a lazy ``"module:attribute"`` string
        (``None``: a plain choice whose behaviour lives in the code that reads it)."""
        if name in self._targets:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._targets[name] = target
        self._help[name] = help
        return target

    # ----------------------------------------------------------------- lookup
    def choices(self) -> tuple[str, ...]:
        """The registered names, in registration order (for ``--help`` and validation)."""
        return tuple(self._targets)

    def help(self, sep: str = " | ") -> str:
        """``"ktup | tup | ..."``: the choices for a ``--help`` text."""
        return sep.join(self._targets)

    def describe(self, name: str) -> str:
        return self._help.get(name, "")

    def check(self, name: Any, key: Optional[str] = None) -> str:
        """``name`` if registered, else a one-line :class:`ConfigError` listing the choices."""
        if name not in self._targets:
            raise ConfigError(f"{key or self.key}: must be one of {', '.join(self._targets)}; got {name!r}")
        return name

    def get(self, name: Any, key: Optional[str] = None) -> Any:
        """The object registered as ``name`` (imported on first use)."""
        self.check(name, key)
        target = self._targets[name]
        if isinstance(target, str) and ":" in target:
            module, _, attr = target.partition(":")
            target = getattr(importlib.import_module(module), attr)
            self._targets[name] = target
        return target

    # ---------------------------------------------------------------- Mapping
    def __getitem__(self, name: str) -> Any:
        if name not in self._targets:
            raise KeyError(name)
        return self.get(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._targets)

    def __len__(self) -> int:
        return len(self._targets)

    def __contains__(self, name: object) -> bool:
        return name in self._targets

    def __repr__(self) -> str:
        return f"Registry({self.kind}: {', '.join(self._targets)})"


# =============================================================== models
#: ``model.model``: classes implementing :class:`ktup.models.base.Model`.
MODELS = Registry("model", "model.model")
MODELS.register("ktup", "ktup.models.tup:KTUP", help="TransUP + TransH jointly, preferences bound to KG relations (the paper)")
MODELS.register("tup", "ktup.models.tup:TUP", help="TransUP alone: translation-based recommendation with latent preferences")
MODELS.register("transh", "ktup.models.kg:TransH", help="TransH KG completion")
MODELS.register("transe", "ktup.models.kg:TransE", help="TransE KG completion")
MODELS.register("bpr", "ktup.models.bpr:BPRMF", help="BPR matrix factorisation")
MODELS.register("transr", "ktup.models.transr:TransR", help="TransR KG completion (relation-specific projection spaces)")
MODELS.register("cke", "ktup.models.cke:CKE", help="CKE (structural part): BPR-MF items plus TransR entity vectors")
MODELS.register("kgat", "ktup.models.kgat:KGAT", help="KGAT: attentive propagation over the collaborative KG, TransR KG loss")
MODELS.register("cfkg", "ktup.models.cfkg:CFKG", help="CFKG: TransE over users, items and entities with an interact relation")

# =========================================================== optimisers
#: ``train.optimizer``: torch optimiser classes (``sparse_adam``: lazy row-wise Adam).
OPTIMIZERS = Registry("optimiser", "train.optimizer")
OPTIMIZERS.register("adam", "torch.optim:Adam")
OPTIMIZERS.register("adagrad", "torch.optim:Adagrad")
OPTIMIZERS.register("sgd", "torch.optim:SGD")
OPTIMIZERS.register("sparse_adam", "ktup.training.sparse:LazyAdam", help="adam with row-wise sparse updates")

# ============================================================ schedules
#: ``train.schedule``: how the rec and KG steps of a joint model share an epoch
#: (plans built by :func:`ktup.training.schedule.epoch_plan`).
SCHEDULES = Registry("schedule", "train.schedule")
SCHEDULES.register("step", help="interleave rec and KG batches, a share joint_lambda of rec steps")
SCHEDULES.register("epoch", help="alternate rec_epochs rec epochs and kg_epochs KG epochs")
SCHEDULES.register("sum", help="one step on joint_lambda·rec + (1-joint_lambda)·KG loss of paired batches")

# ============================================================= samplers
#: ``train.kg_sampling``: which side of a KG triple is corrupted
#: (:class:`ktup.training.sampling.CorruptTripleSampler`).
KG_SAMPLERS = Registry("KG negative sampler", "train.kg_sampling")
KG_SAMPLERS.register("uniform", help="head or tail with probability 1/2")
KG_SAMPLERS.register("bernoulli", help="per relation, by tails-per-head vs heads-per-tail (Wang et al., 2014)")

# =============================================================== splits
#: ``data.split``: functions of :mod:`ktup.data.splits` (``given``: the dataset's own split files).
SPLITS = Registry("split", "data.split")
SPLITS.register("random", "ktup.data.splits:random_split", help="random per-user split by data.split_ratios")
SPLITS.register("ratio_per_user", "ktup.data.splits:random_split", help="alias of random")
SPLITS.register("loo", "ktup.data.splits:loo_split", help="leave one out: last item test, second last valid")
SPLITS.register("temporal", "ktup.data.splits:temporal_split", help="per-user split by time")
SPLITS.register("given", help="the dataset's own train/valid/test files")

# ============================================================== metrics
#: Top-K ranking metrics (computed together by :func:`ktup.evaluation.metrics.ranking_metrics`).
METRICS = Registry("metric", "metric")
for _name, _help in (("recall", "hits / gold"), ("ndcg", "DCG / ideal DCG"), ("mrr", "1 / rank of the first hit"),
                     ("hit", "any hit"), ("precision", "hits / K"), ("map", "RecBole's MAP"),
                     ("f1", "2PR / (P + R)"), ("ndcg_ktup", "the KTUP authors' NDCG variant")):
    METRICS.register(_name, help=_help)

# ============================================================ protocols
#: ``eval.protocol``: :class:`ktup.evaluation.protocols.Protocol` objects.
PROTOCOLS = Registry("evaluation protocol", "eval.protocol")
PROTOCOLS.register("recbole", "ktup.evaluation.protocols:RECBOLE", help="RecBole's benchmark protocol")
PROTOCOLS.register("paper", "ktup.evaluation.protocols:PAPER", help="the KTUP authors' protocol")

# ============================================================= trackers
#: ``train.trackers``: result trackers, callbacks of :mod:`ktup.training.callbacks`.
TRACKERS = Registry("tracker", "train.trackers")
TRACKERS.register("tensorboard", "ktup.training.callbacks:TensorBoardTracker", help="TensorBoard scalars in RUN/tensorboard")
TRACKERS.register("mlflow", "ktup.training.callbacks:MLflowTracker", help="an MLflow run where MLFLOW_TRACKING_URI says")

REGISTRIES = {"model": MODELS, "optimizer": OPTIMIZERS, "schedule": SCHEDULES, "kg_sampling": KG_SAMPLERS,
              "split": SPLITS, "metric": METRICS, "protocol": PROTOCOLS,
              "tracker": TRACKERS}
