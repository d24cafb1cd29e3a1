"""Reading a RecBole YAML config file into a :class:`~ktup.config.Config`.

``ktup train --config recbole.yaml`` takes a RecBole 1.2.1 config as it is: the settings ktup
shares are mapped (RecBole's names through :data:`ktup.config.RECBOLE_ALIASES`, the ones spelled
alike directly, and a few structured ones below), every other key is listed as ignored on one
line. Nothing is dropped silently.

A file is read this way when it has at least one key that only RecBole uses
(:func:`looks_like_recbole`); a ktup config keeps its strict checking (an unknown key is an error).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ktup.config import MODEL_NAMES, RECBOLE_ALIASES, Config, all_keys
from ktup.errors import ConfigError

SECTIONS = tuple(all_keys())

#: Keys only RecBole configs have (besides the aliases): their presence marks a RecBole file.
RECBOLE_ONLY = {
    "USER_ID_FIELD", "ITEM_ID_FIELD", "RATING_FIELD", "TIME_FIELD", "HEAD_ENTITY_ID_FIELD",
    "TAIL_ENTITY_ID_FIELD", "RELATION_ID_FIELD", "ENTITY_ID_FIELD", "load_col", "eval_args", "metrics",
    "train_neg_sample_args", "gpu_id", "use_gpu", "reproducibility", "checkpoint_dir", "show_progress",
    "save_dataset", "save_dataloaders", "benchmark_filename", "loss_decimal_place", "metric_decimal_place",
    "L1_flag", "use_st_gumbel", "kg_weight", "align_weight", "train_rec_step", "train_kg_step",
    "repeatable", "state", "log_wandb", "clip_grad_norm", "MODEL_TYPE", "eval_type", "valid_metric_bigger",
}


def looks_like_recbole(raw: dict[str, Any]) -> bool:
    return any(k in RECBOLE_ONLY or k in RECBOLE_ALIASES for k in raw)


def _structured(key: str, value: Any, mapped: dict[str, Any]) -> bool:
    """RecBole settings with a nested value that carry one of ours; True when mapped."""
    if key == "model" and isinstance(value, str):
        name = value.lower()
        if name in MODEL_NAMES:
            mapped["model.model"] = name
            return True
        return False
    if key == "train_neg_sample_args" and isinstance(value, dict) and "sample_num" in value:
        mapped["train.num_negatives"] = value["sample_num"]
        return True
    if key == "eval_args" and isinstance(value, dict):
        split = value.get("split")
        if isinstance(split, dict) and list(split) == ["RS"] and value.get("order", "RO") == "RO" \
                and value.get("group_by", "user") == "user":
            mapped["data.split"] = "random"
            mapped["data.split_ratios"] = tuple(split["RS"])
            return True
        return False
    if key == "L1_flag" and isinstance(value, bool):
        mapped["model.norm"] = "l1" if value else "l2"
        return True
    if key == "valid_metric" and isinstance(value, str):
        mapped["train.valid_metric"] = value.lower()
        return True
    return False


def from_recbole_dict(raw: dict[str, Any], source: str = "RecBole config") -> tuple[Config, list[str], list[str]]:
    """``(config, mapped, ignored)``: the Config and the RecBole keys used and left aside."""
    ours = {k for ks in all_keys().values() for k in ks}
    mapped: dict[str, Any] = {}
    used, ignored = [], []
    for key, value in raw.items():
        if _structured(key, value, mapped):
            used.append(key)
        elif key in RECBOLE_ALIASES:
            mapped[RECBOLE_ALIASES[key]] = value
            used.append(key)
        elif key in ours and not isinstance(value, dict):
            mapped[key] = value
            used.append(key)
        elif key in SECTIONS and isinstance(value, dict):   # a ktup section in a mixed file: strict as usual
            mapped.update({f"{key}.{k}": v for k, v in value.items()})
            used.append(key)
        else:
            ignored.append(key)
    cfg = Config()
    for key, value in mapped.items():
        cfg.set(key, value, source=source)
    cfg.validate()
    return cfg, used, ignored


def read_recbole_yaml(path: str | Path, raw: dict[str, Any]) -> Config:
    """Map ``raw`` (the file's parsed YAML) and say on stderr what was used and what was ignored."""
    import sys

    cfg, used, ignored = from_recbole_dict(raw, source=str(path))
    print(f"ktup: note: {path}: read as a RecBole config; mapped {', '.join(used) or 'nothing'}", file=sys.stderr)
    if ignored:
        print(f"ktup: note: {path}: ignored (no ktup equivalent): {', '.join(ignored)}", file=sys.stderr)
    return cfg


def load_config_file(path: str | Path) -> Config:
    """A ktup YAML config, or a RecBole one (see the module doc)."""
    import yaml

    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: not valid YAML: {str(e).splitlines()[0]}") from None
    if isinstance(raw, dict) and looks_like_recbole(raw):
        return read_recbole_yaml(p, raw)
    return Config.from_yaml(p)
