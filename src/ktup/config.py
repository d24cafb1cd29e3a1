"""Typed configuration with every default in one place.

The CLI (``--set key=value``), YAML files and the Python API all fill the same objects.
Keys may be given flat (``lr=0.002``) when the name is unique across sections, or dotted
(``train.lr=0.002``). Unknown keys and wrong types raise :class:`ConfigError` naming the key:
a typo is never silently ignored.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from ktup.errors import ConfigError
from ktup.registry import KG_SAMPLERS, MODELS, OPTIMIZERS, PROTOCOLS, SCHEDULES, SPLITS, TRACKERS


@dataclass
class DataConfig:
    dataset: str = "ml-100k"          # registry name or a path
    data_dir: Optional[str] = None    # read DIR/NAME/... (or DIR itself) instead of the cache
    rating_threshold: Optional[float] = None  # keep interactions with rating >= threshold
    k_core: int = 0                   # iterative k-core on users and items (0 = off)
    drop_unlinked: bool = True        # RecBole's behaviour: drop items without a KG entity
    dedup: bool = True                # remove duplicate (user, item) and duplicate triples
    split: str = "random"             # ktup.registry.SPLITS
    split_ratios: tuple = (0.8, 0.1, 0.1)
    kg_split_ratios: tuple = (0.9, 0.05, 0.05)
    split_seed: int = 2020
    kg_relations: tuple = ()          # keep only the triples of these relations (tokens; empty = all)
    kg_drop_relations: tuple = ()     # drop the triples of these relations (applied after kg_relations)


@dataclass
class ModelConfig:
    model: str = "ktup"               # a name of ktup.registry.MODELS
    embedding_size: int = 64
    induction: str = "hard"           # hard (straight-through Gumbel in training, argmax at inference; tuned best) | soft | expected
    inference: str = "expected"       # expected (softmax-weighted mean of the K distances: the mean under hard induction's Gumbel-max choice; tuned best) | induced (argmax for hard, the spec)
    norm: str = "l2"                  # l1 | l2 (squared L2); l2 tuned best on ml-100k (benchmarks/tuning)
    combine: str = "sum"              # sum (paper) | mean (authors' code, RecBole)
    unit_normals: bool = True         # normalise hyperplane normals (spec); False = authors/RecBole
    align_loss: bool = False          # item/entity alignment loss (RecBole adds it)
    num_preferences: int = 0          # tup only; 0 = number of KG relations
    margin: float = 0.5               # KG margin ranking loss (0.5 beat 1 and 2 for ktup on ml-100k valid NDCG@10)
    kg_constraint_weight: float = 0.01  # weight of TransH orthogonality + entity norm constraints
    gumbel_temperature: float = 1.0
    max_norm: float = 1.0             # tup/ktup: user/item/entity rows clipped to this L2 norm after each step (0 = off)
    user_max_norm: float = 0.0        # tup/ktup: users' own clip radius (0 = max_norm)
    item_bias: bool = False           # tup/ktup: add a learned per-item bias to the score (not in the paper; off by default)
    entity_rec_grad: bool = True      # ktup: False = the rec loss does not update entity rows (ĩ = i + stopgrad(e)); True = the paper
    relation_alignment: float = 0.0   # ktup: weight of a loss term tying preference k to relation k (docs/EXPLANATIONS.md; 0 = the paper)
    # A model's own options, by model name: ``model: {model: cke, cke: {...}}`` in YAML,
    # ``--set model.cke.KEY=V``. Each model declares them as a dataclass (``Model.Options``); the
    # keys above are shared (or predate per-model options) and stay flat. Not a key itself.
    options: dict = field(default_factory=dict, metadata={"nested": True})

    def options_for(self, name: Optional[str] = None) -> Any:
        """The options dataclass of model ``name`` (default: ``self.model``), with the values set here."""
        name = name or self.model
        return model_options_class(name)(**self.options.get(name, {}))


@dataclass
class TrainConfig:
    epochs: int = 1000                # a safety cap: runs stop by the convergence rule (patience) well before it
    schedule: str = "step"            # ktup.registry.SCHEDULES: step (interleave by lambda) | epoch (alternate) | sum (paired batches)
    joint_lambda: float = 0.9         # share of rec steps (step) / weight (sum); 0.9 beat 0.7 on valid NDCG@10 (3 seeds)
    kg_loss_weight: float = 1.0       # ktup: multiplies the KG loss in every step that trains it (1 = the paper; docs/KG_DIAGNOSIS.md)
    rec_epochs: int = 1               # for schedule=epoch
    kg_epochs: int = 1
    optimizer: str = "adam"           # ktup.registry.OPTIMIZERS
    lr: float = 1e-3                  # with batch 512 and patience 20: tuned on ml-100k valid NDCG@10 (benchmarks/tuning/RESULTS.md)
    weight_decay: float = 1e-5
    grad_clip: float = 0.0            # 0 = off
    batch_size: int = 512             # recommendation batch
    kg_batch_size: int = 2048
    num_negatives: int = 4            # per positive (rec and KG); 4 beat 1 clearly, 8 barely beat 4 at 2x the time
    kg_sampling: str = "uniform"      # ktup.registry.KG_SAMPLERS
    sparse: bool = False              # row-wise sparse updates (lazy Adam on the rows a batch touched)
    sparse_auto_rows: int = 100_000   # also sparse when user+item+entity rows reach this (0 = only train.sparse)
    compile: bool = False             # the model's losses through torch.compile (faster steps on CPU; ktup/training/compiled.py)
    eval_every: int = 1
    valid_metric: str = "ndcg@10"
    patience: int = 20                # convergence rule: stop after this many evaluations without a better valid metric (0 = off: run to the cap); best epochs at lr 1e-3 were 72-84 on ml-100k
    init_from: tuple = ()             # run dirs to initialise from (tup / transh runs)
    seed: int = 2020
    device: str = "cpu"
    threads: int = 0                  # torch.set_num_threads (0 = torch's default)
    nproc: int = 1                    # processes for data-parallel training (ktup train --nproc)
    dist_backend: str = "auto"        # auto (nccl on cuda, gloo on cpu) | gloo | nccl
    trackers: tuple = ()              # result trackers (ktup.registry.TRACKERS): tensorboard, mlflow


@dataclass
class EvalConfig:
    protocol: str = "recbole"         # ktup.registry.PROTOCOLS
    ks: tuple = (10,)
    user_batch_size: int = 512
    memory_budget_mb: int = 512
    kg_eval: bool = True              # link prediction for KG models at the end of training
    kg_eval_max_triples: int = 1000   # KG link prediction on a seeded sample of this many triples (0 = all)


#: Model names, known without torch: the names of the registry ktup.registry.MODELS.
MODEL_NAMES = MODELS.choices()

#: The choices of model.induction and model.inference (the models and the RecBole bridge check these too).
INDUCTIONS = ("soft", "hard", "expected")
INFERENCES = ("induced", "expected")

#: Keys added after runs were first saved, with the value that reproduces a saved run whose
#: config lacks them: its results were produced before the key (and its new default) existed.
SAVED_COMPAT: dict[tuple[str, str], Any] = {("model", "inference"): "induced"}


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    # ---------------------------------------------------------------- building
    @classmethod
    def from_dict(cls, d: dict[str, Any], saved: bool = False) -> "Config":
        """``saved``: ``d`` is the full config a run or export wrote; keys it lacks because they
        were added later take the value that reproduces it (:data:`SAVED_COMPAT`), not today's default."""
        cfg = cls()
        cfg.update(d)
        if saved:
            cfg._fill_saved(d)
        return cfg

    def _fill_saved(self, raw: Any) -> None:
        for (section, key), old in SAVED_COMPAT.items():
            part = raw.get(section) if isinstance(raw, dict) else None
            if isinstance(part, dict) and key not in part:
                setattr(getattr(self, section), key, old)

    @classmethod
    def from_yaml(cls, path: str | Path, saved: bool = False) -> "Config":
        p = Path(path)
        raw = read_yaml(p, "config file")
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: expected a mapping of keys to values at the top level")
        cfg = cls()
        cfg.update(raw, source=str(p))
        if saved:
            cfg._fill_saved(raw)
        return cfg

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for sec in _SECTIONS:
            d = dataclasses.asdict(getattr(self, sec))
            nested = d.pop("options", None) or {}
            out[sec] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}
            for name, opts in nested.items():   # model: {..., cke: {reg_weight: 0.1}}
                out[sec][name] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in opts.items()}
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def copy(self) -> "Config":
        return Config.from_dict(self.to_dict())

    # ---------------------------------------------------------------- updating
    def update(self, d: dict[str, Any], source: str = "config") -> "Config":
        """Apply a nested ({section: {key: v}}) or flat/dotted ({key: v}) mapping."""
        for key, value in d.items():
            if key in _SECTIONS and isinstance(value, dict):
                for k2, v2 in value.items():
                    if key == "model" and k2 in MODELS and isinstance(v2, dict):   # a model's own options
                        for k3, v3 in v2.items():
                            self.set(f"model.{k2}.{k3}", v3, source=source)
                        continue
                    self.set(f"{key}.{k2}", v2, source=source)
            else:
                self.set(key, value, source=source)
        self.validate()
        return self

    def set(self, key: str, value: Any, source: str = "config") -> None:
        if key.count(".") >= 2 and key.startswith("model."):             # model.<name>.<option>
            _, model, opt = key.split(".", 2)
            self.model.options.setdefault(model, {})[opt] = _model_option(model, opt, value, source)
            return
        section, name = _resolve_key(key, source)
        obj = getattr(self, section)
        ftype = _field_types(type(obj))[name]
        setattr(obj, name, _coerce(value, ftype, f"{section}.{name}", source))

    def apply_overrides(self, items: list[str]) -> "Config":
        """``["lr=0.002", "train.epochs=20"]`` → typed values (YAML scalars)."""
        for item in items:
            if "=" not in item:
                raise ConfigError(f"--set {item!r}: expected key=value")
            k, v = item.split("=", 1)
            try:
                parsed = yaml.safe_load(v) if v.strip() != "" else ""
            except yaml.YAMLError:
                parsed = v
            self.set(k.strip(), parsed, source="--set")
        self.validate()
        return self

    # -------------------------------------------------------------- validation
    def validate(self) -> None:
        m, t, dc, e = self.model, self.train, self.data, self.eval
        MODELS.check(m.model)
        check_choice("model.induction", m.induction, INDUCTIONS)
        check_choice("model.inference", m.inference, INFERENCES)
        check_choice("model.norm", m.norm, ("l1", "l2"))
        check_choice("model.combine", m.combine, ("sum", "mean"))
        SCHEDULES.check(t.schedule)
        OPTIMIZERS.check(t.optimizer)
        KG_SAMPLERS.check(t.kg_sampling)
        SPLITS.check(dc.split)
        PROTOCOLS.check(e.protocol)
        for name in t.trackers:
            TRACKERS.check(name)
        _positive("model.embedding_size", m.embedding_size)
        _positive("train.batch_size", t.batch_size)
        _positive("train.kg_batch_size", t.kg_batch_size)
        _positive("train.num_negatives", t.num_negatives)
        _positive("train.eval_every", t.eval_every)
        _positive("eval.user_batch_size", e.user_batch_size)
        _positive("eval.memory_budget_mb", e.memory_budget_mb)
        _nonneg("train.epochs", t.epochs)
        _nonneg("train.patience", t.patience)
        _nonneg("train.rec_epochs", t.rec_epochs)
        _nonneg("train.kg_epochs", t.kg_epochs)
        _nonneg("data.k_core", dc.k_core)
        _nonneg("model.num_preferences", m.num_preferences)
        _nonneg("model.max_norm", m.max_norm)
        _nonneg("model.user_max_norm", m.user_max_norm)
        _nonneg("model.relation_alignment", m.relation_alignment)
        _nonneg("train.weight_decay", t.weight_decay)
        if not t.kg_loss_weight > 0:
            raise ConfigError(f"train.kg_loss_weight: must be > 0, got {t.kg_loss_weight}")
        _nonneg("train.grad_clip", t.grad_clip)
        _nonneg("eval.kg_eval_max_triples", e.kg_eval_max_triples)
        _nonneg("train.threads", t.threads)
        _nonneg("train.sparse_auto_rows", t.sparse_auto_rows)
        _positive("train.nproc", t.nproc)
        check_choice("train.dist_backend", t.dist_backend, ("auto", "gloo", "nccl"))
        if not t.lr > 0:
            raise ConfigError(f"train.lr: must be > 0, got {t.lr}")
        if not 0.0 <= t.joint_lambda <= 1.0:
            raise ConfigError(f"train.joint_lambda: must be within [0, 1], got {t.joint_lambda}")
        if not m.margin > 0:
            raise ConfigError(f"model.margin: must be > 0 (the KG loss asks true triples to beat corrupted "
                              f"ones by this much), got {m.margin}")
        _nonneg("model.kg_constraint_weight", m.kg_constraint_weight)
        if not m.gumbel_temperature > 0:
            raise ConfigError(f"model.gumbel_temperature: must be > 0, got {m.gumbel_temperature}")
        for name, ratios in (("data.split_ratios", dc.split_ratios), ("data.kg_split_ratios", dc.kg_split_ratios)):
            if len(ratios) != 3 or any(float(r) < 0 for r in ratios) or sum(float(r) for r in ratios) <= 0:
                raise ConfigError(f"{name}: expected three non-negative numbers (train, valid, test), got {list(ratios)}")
        if not e.ks or any(int(k) <= 0 for k in e.ks):
            raise ConfigError(f"eval.ks: expected a list of positive integers, got {list(e.ks)}")
        if t.schedule == "epoch" and t.rec_epochs + t.kg_epochs == 0:
            raise ConfigError("train.rec_epochs, train.kg_epochs: at least one must be > 0")


#: RecBole's names for settings ktup shares, accepted anywhere a key is (``--set``, YAML, Python)
#: with a one-line note; RecBole's own spellings of our names (embedding_size, epochs, seed,
#: weight_decay, valid_metric, margin) need no alias. See also :mod:`ktup.recbole_config`.
RECBOLE_ALIASES = {
    "learning_rate": "train.lr",
    "train_batch_size": "train.batch_size",
    "eval_batch_size": "eval.user_batch_size",   # RecBole counts rows; ktup counts users (memory stays bounded by eval.memory_budget_mb)
    "stopping_step": "train.patience",
    "eval_step": "train.eval_every",
    "topk": "eval.ks",
    "learner": "train.optimizer",
    "data_path": "data.data_dir",
}

_SECTIONS = ("data", "model", "train", "eval")
_SECTION_TYPES = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "eval": EvalConfig}


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if not f.metadata.get("nested")}


def model_options_class(name: str) -> type:
    """``MODELS[name].Options``: the dataclass of a model's own options (imports the model, so torch)."""
    return MODELS.get(name, "model").Options


def _model_option(model: str, opt: str, value: Any, source: str) -> Any:
    """``value`` coerced to the type model ``model`` declares for option ``opt``; unknown → ConfigError."""
    key = f"model.{model}.{opt}"
    MODELS.check(model, key)
    types = _field_types(model_options_class(model))
    if opt not in types:
        known = ", ".join(types) or "none"
        raise ConfigError(f"{source}: unknown config key {key!r} ({model}'s own options: {known})")
    return _coerce(value, types[opt], key, source)


def all_keys() -> dict[str, list[str]]:
    """Every valid key by section (for help and error messages)."""
    return {s: list(_field_types(c)) for s, c in _SECTION_TYPES.items()}


def resolve_key(key: str, source: str = "config") -> str:
    """The full ``section.name`` of a (possibly short) key; ``ConfigError`` if unknown or ambiguous."""
    return ".".join(_resolve_key(str(key), source))


def field_type(key: str) -> Any:
    """The Python type of a full ``section.name`` key (``int``, ``float``, ``str``, ``bool``, ``tuple``)."""
    section, name = key.split(".", 1)
    t = _field_types(_SECTION_TYPES[section])[name]
    args = [a for a in typing.get_args(t) if a is not type(None)]
    return args[0] if typing.get_origin(t) is typing.Union and len(args) == 1 else t


def _resolve_key(key: str, source: str) -> tuple[str, str]:
    if "." in key:
        section, name = key.split(".", 1)
        if section not in _SECTION_TYPES:
            raise ConfigError(f"{source}: unknown config section {section!r} in key {key!r} (sections: {', '.join(_SECTIONS)})")
        if name not in _field_types(_SECTION_TYPES[section]):
            raise ConfigError(f"{source}: unknown config key {key!r}{_suggest(name)}")
        return section, name
    owners = [s for s, c in _SECTION_TYPES.items() if key in _field_types(c)]
    if not owners and key in RECBOLE_ALIASES:
        target = RECBOLE_ALIASES[key]
        _note(f"{source}: {key} is RecBole's name for {target}")
        return tuple(target.split(".", 1))  # type: ignore[return-value]
    if not owners:
        raise ConfigError(f"{source}: unknown config key {key!r}{_suggest(key)}")
    if len(owners) > 1:
        raise ConfigError(f"{source}: key {key!r} is ambiguous; write one of {', '.join(o + '.' + key for o in owners)}")
    return owners[0], key


def _suggest(name: str) -> str:
    import difflib

    every = [k for ks in all_keys().values() for k in ks] + list(RECBOLE_ALIASES)
    close = difflib.get_close_matches(name, every, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _coerce(value: Any, ftype: Any, key: str, source: str) -> Any:
    origin = typing.get_origin(ftype)
    args = typing.get_args(ftype)
    if origin is typing.Union and type(None) in args:
        if value is None:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, key, source)
    bad = ConfigError(f"{source}: {key}: expected {getattr(ftype, '__name__', ftype)}, got {value!r}")
    if ftype is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise bad
    if ftype is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise bad from None
        raise bad
    if ftype is float:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, (int, float)):
            return _finite(float(value), key, source)
        if isinstance(value, str):
            try:
                x = float(value)
            except ValueError:
                raise bad from None
            return _finite(x, key, source)
        raise bad
    if ftype is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise bad
    if ftype is tuple:
        if isinstance(value, str):
            value = [v for v in value.replace(",", " ").split() if v]
            value = [yaml.safe_load(v) for v in value]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if isinstance(value, (list, tuple)):
            for v in value:
                if isinstance(v, float) and not math.isfinite(v):
                    raise ConfigError(f"{source}: {key}: must hold finite numbers, got {list(value)}")
            return tuple(value)
        raise bad
    return value


def _finite(x: float, key: str, source: str) -> float:
    """NaN and ±inf pass every ``<``/``>`` range check (NaN compares false), so refuse them here,
    naming the key, before they reach an optimiser or a loss."""
    if not math.isfinite(x):
        raise ConfigError(f"{source}: {key}: must be a finite number, got {x}")
    return x


_noted: set[str] = set()


def _note(msg: str) -> None:
    """One line on stderr, once per process (alias notes; stdout stays clean for --json/--jsonl)."""
    if msg not in _noted:
        _noted.add(msg)
        import sys

        print(f"ktup: note: {msg}", file=sys.stderr)


def read_yaml(path: Path, what: str) -> Any:
    """A YAML file's content; a missing or unparseable ``what`` is a one-line ``ConfigError``."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None


def check_choice(key: str, value: str, options: tuple) -> None:
    """One-line ConfigError unless ``value`` is one of ``options``."""
    if value not in options:
        raise ConfigError(f"{key}: must be one of {', '.join(options)}; got {value!r}")


def _positive(key: str, value: int) -> None:
    if value <= 0:
        raise ConfigError(f"{key}: must be > 0, got {value}")


def _nonneg(key: str, value) -> None:
    if value < 0:
        raise ConfigError(f"{key}: must be >= 0, got {value}")
