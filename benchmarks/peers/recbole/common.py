"""Shared pieces of the RecBole peer benchmark (runs INSIDE benchmarks/peers/recbole/.venv).

One place defines the protocol (the settings of docs/PROTOCOLS.md's reference table) and how a
model is trained and timed inside RecBole's own pipeline, so `run_recbole.py` (RecBole's
models) and `compare_in_recbole.py` (RecBole's KTUP next to ours) measure the same thing.
Nothing here is RecBole code: it only calls RecBole's public API.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
WORK = HERE / "work"
SPLIT_FILES = ("ml-100k.train.inter", "ml-100k.valid.inter", "ml-100k.test.inter", "ml-100k.kg", "ml-100k.link")
# RecBole hard-wires the name "ml-100k" to the copy bundled in its wheel, so the split is
# presented under another dataset name.
DATASET = "ml-100k-split"


def shared_split_dir() -> Path:
    """The pre-split ml-100k (RecBole's exact split), beside the repo or from KTUP_SHARED_DATASETS."""
    env = os.environ.get("KTUP_SHARED_DATASETS")
    base = Path(env) if env else REPO.parent / "shared" / "datasets"
    return base / "ml-100k-recbole-split"


def prepare_data(work: Path = WORK) -> Path:
    """Symlink the split files into work/data/<DATASET>/ (RecBole reads DATA_PATH/DATASET/DATASET.*)."""
    src = shared_split_dir()
    missing = [f for f in SPLIT_FILES if not (src / f).is_file()]
    if missing:
        raise SystemExit(f"run_recbole: missing {', '.join(missing)} in {src}")
    dst = work / "data" / DATASET
    dst.mkdir(parents=True, exist_ok=True)
    for f in SPLIT_FILES:
        link = dst / f.replace("ml-100k", DATASET, 1)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(src / f)
    return work / "data"


def protocol_config(data_path: Path, epochs: int, seed: int = 2020, work: Path = WORK) -> dict[str, Any]:
    """RecBole config dict of the reference protocol (docs/PROTOCOLS.md)."""
    return {
        "data_path": str(data_path),
        "benchmark_filename": ["train", "valid", "test"],   # use the pre-split files as they are
        "load_col": {
            "inter": ["user_id", "item_id"],
            "kg": ["head_id", "relation_id", "tail_id"],
            "link": ["item_id", "entity_id"],
        },
        "embedding_size": 64,
        "learner": "adam",
        "learning_rate": 1e-3,
        "train_batch_size": 2048,
        "eval_batch_size": 4096,
        "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1, "alpha": 1.0,
                                  "dynamic": False, "candidate_num": 0},
        "eval_args": {"mode": "full", "group_by": "user", "order": "RO",
                      "split": {"RS": [0.8, 0.1, 0.1]}},
        "metrics": ["Recall", "NDCG", "MRR", "Hit", "Precision"],
        "topk": [10],
        "valid_metric": "MRR@10",
        "stopping_step": 10,
        "epochs": epochs,
        "eval_step": 1,
        "seed": seed,
        "reproducibility": True,
        "show_progress": False,
        "device": "cpu",
        "use_gpu": False,
        # one folder per process: RecBole names checkpoints "<model>-<time to the second>.pth",
        # so two runs started in the same second would overwrite each other's best model
        "checkpoint_dir": str(work / "saved" / f"pid{os.getpid()}"),
        "log_wandb": False,
        "state": "INFO",
    }


class EpochTimer:
    """Wraps a RecBole trainer's per-epoch methods to time training epochs and full evaluations."""

    def __init__(self, trainer) -> None:
        self.train_s: list[float] = []
        self.eval_s: list[float] = []
        self.kinds: list[str] = []
        self.valid_scores: list[float] = []
        train_epoch, valid_epoch = trainer._train_epoch, trainer._valid_epoch

        def timed_train(train_data, epoch_idx, *a, **k):
            t0 = time.perf_counter()
            out = train_epoch(train_data, epoch_idx, *a, **k)
            self.train_s.append(time.perf_counter() - t0)
            self.kinds.append(_epoch_kind(trainer, epoch_idx))
            return out

        def timed_valid(valid_data, *a, **k):
            t0 = time.perf_counter()
            out = valid_epoch(valid_data, *a, **k)
            self.eval_s.append(time.perf_counter() - t0)
            self.valid_scores.append(float(out[0]))
            return out

        trainer._train_epoch = timed_train
        trainer._valid_epoch = timed_valid

    def best_epoch(self) -> int:
        """Epoch (0-based, eval_step 1) RecBole kept: the last one reaching the best score (it uses >=)."""
        if not self.valid_scores:
            return -1
        best = max(self.valid_scores)
        return max(i for i, v in enumerate(self.valid_scores) if v == best)

    def summary(self) -> dict[str, Any]:
        def mean(xs):
            return round(sum(xs) / len(xs), 4) if xs else None

        by_kind: dict[str, list[float]] = {}
        for kind, s in zip(self.kinds, self.train_s):
            by_kind.setdefault(kind, []).append(s)
        return {
            "epochs_run": len(self.train_s),
            "s_per_train_epoch": mean(self.train_s),
            "s_per_train_epoch_by_kind": {k: mean(v) for k, v in by_kind.items()},
            "s_per_full_eval": mean(self.eval_s),
            "train_s_total": round(sum(self.train_s), 2),
            "eval_s_total": round(sum(self.eval_s), 2),
        }


def _epoch_kind(trainer, epoch_idx: int) -> str:
    """'rec' or 'kg' for KGTrainer's alternating epochs, 'rec' otherwise."""
    rec, kg = getattr(trainer, "train_rec_step", None), getattr(trainer, "train_kg_step", None)
    if rec is None or kg is None:
        return "rec"
    return "rec" if epoch_idx % (rec + kg) < rec else "kg"


def train_and_test(model_cls_or_name, config_dict: dict[str, Any], log=print, model_name: Optional[str] = None) -> dict[str, Any]:
    """Train one model in RecBole's pipeline (its data loaders, trainer, evaluator) and test the
    best-valid checkpoint. `model_cls_or_name` is a RecBole model name or a model class."""
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_logger, init_seed

    argv, sys.argv = sys.argv, sys.argv[:1]   # RecBole's Config also parses the command line
    try:
        config = Config(model=model_cls_or_name, dataset=DATASET, config_dict=config_dict)
    finally:
        sys.argv = argv
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    t0 = time.perf_counter()
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    data_s = time.perf_counter() - t0
    init_seed(config["seed"], config["reproducibility"])
    cls = model_cls_or_name if not isinstance(model_cls_or_name, str) else get_model(model_cls_or_name)
    model = cls(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    timer = EpochTimer(trainer)
    name = model_name or config["model"]
    log(f"[{name}] training (max {config['epochs']} epochs, trainer {type(trainer).__name__}, "
        f"{sum(p.numel() for p in model.parameters())} parameters)")
    t1 = time.perf_counter()
    best_valid_score, best_valid = trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    fit_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    load_best(trainer)
    test = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    test_eval_s = time.perf_counter() - t2
    result = {
        "model": name,
        "model_class": f"{cls.__module__}.{cls.__qualname__}",
        "trainer": type(trainer).__name__,
        "best_epoch": timer.best_epoch(),
        "valid_curve_mrr@10": [round(v, 4) for v in timer.valid_scores],
        "best_valid_mrr@10": float(best_valid_score),
        "valid": {k: float(v) for k, v in best_valid.items()},
        "test": {k: float(v) for k, v in test.items()},
        "timing": {**timer.summary(), "fit_s": round(fit_s, 2), "test_eval_s": round(test_eval_s, 3),
                   "data_prep_s": round(data_s, 2)},
        "dataset": {"users": dataset.user_num, "items": dataset.item_num,
                    "entities": getattr(dataset, "entity_num", None),
                    "relations": getattr(dataset, "relation_num", None),
                    "train": len(train_data._dataset), "valid": len(valid_data._dataset),
                    "test": len(test_data._dataset)},
        "torch_threads": torch.get_num_threads(),
    }
    log(f"[{name}] test {fmt_metrics(result['test'])}  | {result['timing']['s_per_train_epoch']} s/epoch, "
        f"{result['timing']['s_per_full_eval']} s/eval, {result['timing']['epochs_run']} epochs")
    return result


def build(model_cls_or_name, config_dict: dict[str, Any]):
    """(config, model, trainer, train_data, valid_data) in RecBole's pipeline, untrained."""
    config, _, model, trainer, train_data, valid_data = pipeline(model_cls_or_name, config_dict)
    return config, model, trainer, train_data, valid_data


def pipeline(model_cls_or_name, config_dict: dict[str, Any], dataset_name: str = DATASET):
    """(config, dataset, model, trainer, train_data, valid_data): RecBole's set-up of an untrained
    model on ``dataset_name`` (its Config, seeds, logger, dataset, loaders, model, trainer)."""
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_logger, init_seed

    argv, sys.argv = sys.argv, sys.argv[:1]    # RecBole's Config also parses the command line
    try:
        config = Config(model=model_cls_or_name, dataset=dataset_name, config_dict=config_dict)
    finally:
        sys.argv = argv
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    dataset = create_dataset(config)
    train_data, valid_data, _ = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    cls = model_cls_or_name if not isinstance(model_cls_or_name, str) else get_model(model_cls_or_name)
    model = cls(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    return config, dataset, model, trainer, train_data, valid_data


def speed_probe(entries: dict[str, tuple], repeats: int, log=print) -> dict[str, dict[str, float]]:
    """Interleaved timing of one rec epoch, one KG epoch and one full validation per model,
    ``repeats`` rounds, min over rounds: on a shared machine, interleaving in one process is
    what makes the models' figures comparable. ``entries``: name → build(...) result."""
    times: dict[str, dict[str, list[float]]] = {
        n: {"rec_epoch_s": [], "kg_epoch_s": [], "full_eval_s": [], "score_all_s": []} for n in entries}
    for rnd in range(repeats):
        for name, (config, model, trainer, train_data, valid_data) in entries.items():
            rec_steps = config["train_rec_step"] or 1
            for key, epoch_idx in (("rec_epoch_s", 0), ("kg_epoch_s", rec_steps)):
                t0 = time.perf_counter()
                trainer._train_epoch(train_data, epoch_idx, show_progress=False)
                times[name][key].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            trainer._valid_epoch(valid_data, show_progress=False)
            times[name]["full_eval_s"].append(time.perf_counter() - t0)
            times[name]["score_all_s"].append(score_all_seconds(config, model))
            log(f"[speed round {rnd + 1}/{repeats}] {name}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in times[name].items()))
    return {n: {k: round(min(v), 3) for k, v in d.items()} for n, d in times.items()}


def score_all_seconds(config, model) -> float:
    """Seconds to score every user against every item through the model alone (no loader):
    ``full_sort_predict`` on 256 users a call where the model has it, else RecBole's fallback,
    ``predict`` on the repeated (user, item) pairs of eval_batch_size // n_items users a call."""
    import torch
    from recbole.data.interaction import Interaction

    uid, iid = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]
    n_users, n_items = model.n_users, model.n_items
    users = torch.arange(1, n_users)                                   # 0 is [PAD]
    model.eval()
    t0 = time.perf_counter()
    with torch.no_grad():
        try:
            for chunk in users.split(256):
                model.full_sort_predict(Interaction({uid: chunk}))
        except NotImplementedError:
            t0 = time.perf_counter()
            per_call = max(1, (config["eval_batch_size"] or 4096) // n_items)
            for chunk in users.split(per_call):
                model.predict(Interaction({uid: chunk.repeat_interleave(n_items),
                                           iid: torch.arange(n_items).repeat(len(chunk))}))
    return time.perf_counter() - t0


def load_best(trainer) -> None:
    """Load the best-valid checkpoint RecBole saved. RecBole 1.2.1's own reload calls
    torch.load with torch >= 2.6's weights_only default, which rejects its pickled config;
    the file is our own, just written, so it is loaded in full here."""
    import torch

    checkpoint = torch.load(trainer.saved_model_file, map_location=trainer.device, weights_only=False)
    trainer.model.load_state_dict(checkpoint["state_dict"])
    trainer.model.load_other_parameter(checkpoint.get("other_parameter"))


def fmt_metrics(m: dict[str, float]) -> str:
    keys = ["recall@10", "ndcg@10", "mrr@10", "hit@10", "precision@10"]
    return " ".join(f"{k}={m[k]:.4f}" for k in keys if k in m)


def versions() -> dict[str, str]:
    import numpy
    import recbole
    import torch

    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
           "recbole": recbole.__version__, "platform": platform.platform(), "cpu_count": str(os.cpu_count())}
    try:
        import ktup
        out["ktup"] = getattr(ktup, "__version__", "?")
    except Exception:   # noqa: BLE001 - ktup is optional in the peer venv
        pass
    try:
        out["git_commit"] = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                                           text=True, check=False).stdout.strip()
    except OSError:
        pass
    return out


def write_json(obj: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def command_line() -> str:
    """The command as typed from the repo root (the interpreter path relative to it when inside)."""
    exe = Path(sys.executable)
    try:
        exe = exe.relative_to(REPO)
    except ValueError:
        pass
    return " ".join([str(exe)] + sys.argv)
