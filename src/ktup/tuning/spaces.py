"""Search spaces: what ``ktup tune`` may vary, per model, and the YAML files that change it.

A space maps full config keys (``train.lr``) to a :class:`Param`: a numeric range (``low``,
``high``, optional ``log`` or ``step``; integer when the config key is an integer) or a list of
``choices``. Every model has a default (:data:`DEFAULT_SPACES`, drawn from the hand tuning
recorded in ``benchmarks/tuning/RESULTS.md``). A YAML file overrides it key by key::

    train.lr: {low: 1.0e-4, high: 1.0e-2, log: true}
    model.norm: {choices: [l1, l2]}
    train.num_negatives: {choices: [1, 4, 8]}
    train.joint_lambda: {low: 0.5, high: 1.0, step: 0.1}
    train.weight_decay: null          # drop a default parameter
    extends: none                     # optional: start from an empty space instead of the default

Short keys (``lr``) are accepted as in ``--set``. Every mistake is a one-line ``ConfigError``
naming the file and the key, raised before any trial runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional


from ktup.config import Config, field_type, read_yaml, resolve_key
from ktup.errors import ConfigError


@dataclass(frozen=True)
class Param:
    """One searched setting: ``choices``, or a range ``[low, high]`` (``log`` scale or ``step``)."""

    key: str
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    step: Optional[float] = None
    choices: Optional[tuple] = None

    def describe(self) -> str:
        if self.choices is not None:
            return f"{self.key} in {list(self.choices)}"
        scale = " (log)" if self.log else f" (step {self.step})" if self.step else ""
        return f"{self.key} in [{self.low}, {self.high}]{scale}"

    def suggest(self, trial) -> Any:
        """Draw a value from an Optuna trial (the parameter is named by its config key)."""
        if self.choices is not None:
            return trial.suggest_categorical(self.key, list(self.choices))
        if field_type(self.key) is int:
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log,
                                     step=int(self.step or 1))
        return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.log, step=self.step)


def _p(key: str, low=None, high=None, log=False, step=None, choices=None) -> Param:
    return Param(key, low, high, log, step, tuple(choices) if choices is not None else None)


_LR = _p("train.lr", 2e-4, 1e-2, log=True)
_WD = _p("train.weight_decay", 1e-7, 1e-3, log=True)
_NEG = _p("train.num_negatives", choices=[1, 4, 8])

#: The default space of each model (keys: the model names of ``ktup.models.MODELS``).
DEFAULT_SPACES: dict[str, dict[str, Param]] = {
    "bpr": {p.key: p for p in (_LR, _WD, _NEG, _p("train.batch_size", choices=[256, 512, 1024]))},
    "ktup": {p.key: p for p in (_LR, _WD, _NEG, _p("train.joint_lambda", 0.5, 1.0, step=0.1),
                                _p("model.margin", 0.25, 2.0, log=True), _p("model.norm", choices=["l1", "l2"]))},
    "tup": {p.key: p for p in (_LR, _WD, _NEG, _p("model.norm", choices=["l1", "l2"]))},
    "transh": {p.key: p for p in (_LR, _WD, _NEG, _p("model.margin", 0.25, 4.0, log=True),
                                  _p("model.norm", choices=["l1", "l2"]))},
    "transe": {p.key: p for p in (_LR, _WD, _NEG, _p("model.margin", 0.25, 4.0, log=True),
                                  _p("model.norm", choices=["l1", "l2"]))},
    # The KG baselines: shared keys only (their own options keep their defaults unless a space file adds them).
    "transr": {p.key: p for p in (_LR, _WD, _NEG, _p("model.margin", 0.25, 4.0, log=True))},
    "cke": {p.key: p for p in (_LR, _WD, _NEG, _p("train.joint_lambda", 0.5, 1.0, step=0.1))},
    "cfkg": {p.key: p for p in (_LR, _WD, _NEG, _p("train.joint_lambda", 0.5, 1.0, step=0.1),
                                _p("model.margin", 0.25, 2.0, log=True), _p("model.norm", choices=["l1", "l2"]))},
    "kgat": {p.key: p for p in (_LR, _WD, _p("train.joint_lambda", 0.5, 1.0, step=0.1),
                                _p("train.batch_size", choices=[1024, 2048, 4096]))},
}

_SPEC_KEYS = {"low", "high", "log", "step", "choices"}


#: The space of a registered model without an entry above: what every model trains with.
GENERIC_SPACE: dict[str, Param] = {p.key: p for p in (_LR, _WD, _NEG)}


def default_space(model: str) -> dict[str, Param]:
    """The model's default space; a registered model without its own entry gets :data:`GENERIC_SPACE`."""
    if model in DEFAULT_SPACES:
        return dict(DEFAULT_SPACES[model])
    from ktup.registry import MODELS

    MODELS.check(model, "model")     # one line naming the choices for an unknown model
    return dict(GENERIC_SPACE)


def _number(value: Any, where: str, what: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{where}: {what} must be a number, got {value!r}")
    try:
        x = float(value)  # YAML reads 1e-4 (no dot) as a string
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {what} must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise ConfigError(f"{where}: {what} must be finite, got {value!r}")
    return x


def parse_param(key: str, spec: Any, source: str) -> Param:
    """One entry of a space file → :class:`Param` (checked: kind, empty range, log range)."""
    full = resolve_key(key, source)
    where = f"{source}: {full}"
    if isinstance(spec, list):
        spec = {"choices": spec}
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a mapping with low/high (log, step) or choices, got {spec!r}")
    unknown = sorted(set(map(str, spec)) - _SPEC_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown field {unknown[0]!r} (fields: {', '.join(sorted(_SPEC_KEYS))})")
    kind = field_type(full)
    if "choices" in spec:
        if set(spec) - {"choices"}:
            raise ConfigError(f"{where}: give either choices or low/high, not both")
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: choices must be a non-empty list")
        if any(not isinstance(c, (str, int, float, bool)) for c in choices):
            raise ConfigError(f"{where}: choices must be plain values (numbers, strings, booleans)")
        return _p(full, choices=choices)
    if "low" not in spec or "high" not in spec:
        raise ConfigError(f"{where}: a range needs both low and high (or give choices)")
    if kind not in (int, float):
        raise ConfigError(f"{where}: is not numeric ({kind.__name__}); give choices instead of a range")
    low, high = _number(spec["low"], where, "low"), _number(spec["high"], where, "high")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: log must be true or false, got {log!r}")
    step = None if spec.get("step") is None else _number(spec["step"], where, "step")
    if not low < high:
        raise ConfigError(f"{where}: empty range [{spec['low']}, {spec['high']}] (low must be < high)")
    if log and low <= 0:
        raise ConfigError(f"{where}: log range [{spec['low']}, {spec['high']}] touches 0 (low must be > 0)")
    if step is not None and (step <= 0 or log):
        raise ConfigError(f"{where}: step must be > 0 and cannot be combined with log")
    if kind is int and not (low.is_integer() and high.is_integer() and (step is None or step.is_integer())):
        raise ConfigError(f"{where}: is an integer setting; low, high and step must be integers")
    return _p(full, low=int(low) if kind is int else low, high=int(high) if kind is int else high, log=log,
              step=(int(step) if kind is int else step) if step is not None else None)


def load_space(path: str | Path, model: str) -> dict[str, Param]:
    """The default space of ``model`` updated by the YAML file ``path``."""
    p = Path(path)
    raw = read_yaml(p, "search space file")
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping of config keys to ranges or choices")
    extends = raw.pop("extends", "default")
    if extends not in ("default", "none"):
        raise ConfigError(f"{p}: extends must be 'default' or 'none', got {extends!r}")
    space = default_space(model) if extends == "default" else {}
    for key, spec in raw.items():
        if spec is None:
            space.pop(resolve_key(str(key), f"{p}"), None)
        else:
            param = parse_param(str(key), spec, str(p))
            space[param.key] = param
    return space


def check_space(space: dict[str, Param], base: Config, source: str = "search space") -> None:
    """Every end of every range and every choice must give a valid config (one-line error otherwise)."""
    if not space:
        raise ConfigError(f"{source}: nothing to search (the space is empty)")
    for param in space.values():
        values = list(param.choices) if param.choices is not None else [param.low, param.high]
        for v in values:
            cfg = base.copy()
            try:
                cfg.set(param.key, v, source=source)
                cfg.validate()
            except ConfigError as e:
                raise ConfigError(f"{source}: {param.key} = {v!r} is not a valid setting ({e})") from None


def fix_settings(space: dict[str, Param], overrides: list[str]) -> tuple[dict[str, Param], list[str]]:
    """Drop from ``space`` the keys that ``--set`` fixes; returns the space and the dropped keys."""
    fixed = set()
    for item in overrides:
        if "=" in item:
            fixed.add(resolve_key(item.split("=", 1)[0].strip(), "--set"))
    dropped = sorted(k for k in space if k in fixed)
    return {k: v for k, v in space.items() if k not in fixed}, dropped


def space_to_dict(space: dict[str, Param]) -> dict[str, dict[str, Any]]:
    """The YAML-able form of a space (the study stores it; a space file takes it back)."""
    out: dict[str, dict[str, Any]] = {}
    for k, p in space.items():
        if p.choices is not None:
            out[k] = {"choices": list(p.choices)}
        else:
            out[k] = {"low": p.low, "high": p.high, **({"log": True} if p.log else {}),
                      **({"step": p.step} if p.step else {})}
    return out
