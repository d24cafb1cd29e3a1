"""The search itself: an Optuna study whose trials are ordinary ``ktup`` training runs.

    from ktup.tuning import TuneOptions, tune
    result = tune(TuneOptions(model="bpr", dataset="synthetic-tiny", trials=8, overrides=["epochs=10"]))

Objective: the best validation value of ``train.valid_metric`` (the trainer's early stopping and
best checkpoint, as ``ktup train`` selects); every validation epoch is reported to Optuna through
the trainer's ``on_eval`` callback, so the pruner can stop a trial early. Trials run with
``test=False``: the test split is never evaluated during the search.

Storage: ``sqlite:///<study folder>/study.db`` by default, or any SQLAlchemy URL that several
processes (``--jobs``, or ``ktup tune`` started on several machines) share. Each process beats a
heartbeat into the storage; a trial whose process died (killed, machine lost) is marked failed once
its heartbeat is older than the grace period and is retried once with the same parameters, so a
killed ``ktup tune`` resumes its study by being started again with the same arguments. The trial
budget counts finished trials (complete, pruned, failed by an error), so a resumed study runs only
what is missing.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import shutil
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ktup.config import Config
from ktup.errors import ConfigError, KtupError
from ktup.tuning.spaces import Param, check_space, default_space, fix_settings, load_space, space_to_dict

PRUNERS = ("median", "halving", "none")
KEEP = ("best", "all")


@dataclass
class TuneOptions:
    model: str = "ktup"
    dataset: Optional[str] = None            # default: the base config's (ml-100k)
    data_dir: Optional[str] = None
    trials: int = 20                         # budget: finished trials in the study
    timeout: Optional[float] = None          # seconds; no new trial starts after it
    jobs: int = 1                            # worker processes on this machine
    storage: Optional[str] = None            # SQLAlchemy URL (default: SQLite in the study folder)
    study: Optional[str] = None              # default: <model>-<dataset>
    folder: Optional[str] = None             # study folder (default: tuning/<study>)
    space: Optional[str] = None              # YAML file overriding the model's default space
    config: Optional[str] = None             # base YAML config
    overrides: list[str] = field(default_factory=list)  # fixed settings (--set)
    seeds: int = 0                           # confirmation: retrain the best with K seeds, test mean ± std
    keep: str = "all"                        # all | best: trial run directories kept
    pruner: str = "median"                   # median | halving | none
    startup_trials: int = 3                  # median: trials finished before any pruning
    warmup_epochs: int = 0                   # median: epochs of each trial before it may be pruned
    sampler_seed: int = 0                    # TPE seed (+ worker index)
    heartbeat: int = 30                      # seconds between heartbeats; grace period 4x
    quiet: bool = False
    worker_index: int = 0                    # internal: >0 for the extra --jobs processes

    def base_config(self) -> Config:
        cfg = Config.from_yaml(self.config) if self.config else Config()
        cfg.set("model.model", self.model, source="--model")
        if self.dataset:
            cfg.set("data.dataset", self.dataset, source="--dataset")
        if self.data_dir:
            cfg.set("data.data_dir", self.data_dir, source="--data-dir")
        cfg.apply_overrides(self.overrides)
        cfg.validate()
        return cfg

    def study_name(self, cfg: Config) -> str:
        return self.study or f"{self.model}-{Path(str(cfg.data.dataset)).name}"

    def folder_path(self, cfg: Config) -> Path:
        return Path(self.folder) if self.folder else Path("tuning") / self.study_name(cfg)

    def storage_url(self, cfg: Config) -> str:
        return self.storage or f"sqlite:///{(self.folder_path(cfg) / 'study.db').resolve()}"


class Pruned(Exception):
    """Raised from the trainer's validation callback: the trainer marks the run ``pruned``."""

    run_status = "pruned"


def _optuna():
    try:
        import optuna
    except ModuleNotFoundError:
        raise KtupError("ktup tune needs Optuna: pip install 'ktup[tune]' (or pip install optuna)") from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    # heartbeats, stale-trial retries and the matplotlib plots are marked experimental: say it once, in the docs
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


# ---------------------------------------------------------------------- checks and opening
def prepare(opts: TuneOptions) -> tuple[Config, dict[str, Param], list[str]]:
    """Base config and checked space (one-line errors, before any storage or trial)."""
    if opts.trials <= 0:
        raise ConfigError(f"--trials: must be > 0, got {opts.trials}")
    if opts.jobs <= 0:
        raise ConfigError(f"--jobs: must be > 0, got {opts.jobs}")
    if opts.seeds < 0:
        raise ConfigError(f"--seeds: must be >= 0, got {opts.seeds}")
    if opts.pruner not in PRUNERS:
        raise ConfigError(f"--pruner: must be one of {', '.join(PRUNERS)}; got {opts.pruner!r}")
    if opts.keep not in KEEP:
        raise ConfigError(f"--keep: must be one of {', '.join(KEEP)}; got {opts.keep!r}")
    if opts.timeout is not None and opts.timeout <= 0:
        raise ConfigError(f"--timeout: must be > 0 seconds, got {opts.timeout}")
    base = opts.base_config()
    space = load_space(opts.space, opts.model) if opts.space else default_space(opts.model)
    space, fixed = fix_settings(space, opts.overrides)
    check_space(space, base, opts.space or f"search space of {opts.model}")
    return base, space, fixed


def open_storage(url: str, heartbeat: int):
    _optuna()

    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": 120}}  # several processes on one file: wait for the lock
    import optuna.storages as st

    if hasattr(st, "RetryHeartbeatStaleTrialCallback"):  # Optuna >= 4.9
        retry = {"heartbeat_stale_trial_callback": st.RetryHeartbeatStaleTrialCallback(max_retry=1)}
    else:
        retry = {"failed_trial_callback": st.RetryFailedTrialCallback(max_retry=1)}
    for attempt in range(6):
        try:
            return st.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=heartbeat,
                                 grace_period=4 * heartbeat, **retry)
        except Exception as e:  # noqa: BLE001 - SQLAlchemy/driver errors of every kind: one line
            text = str(e)
            # processes that start together on a new database race to create its tables: try again
            if attempt < 5 and any(m in text for m in ("already exists", "database is locked", "UNIQUE constraint",
                                                       "Duplicate", "duplicate key")):
                time.sleep(0.5 * (attempt + 1))
                continue
            msg = text.strip().splitlines()[0] if text.strip() else type(e).__name__
            raise KtupError(f"--storage {url}: cannot open the storage ({type(e).__name__}: {msg})") from None
    raise AssertionError("unreachable")


def make_pruner(opts: TuneOptions):
    optuna = _optuna()
    if opts.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=opts.startup_trials, n_warmup_steps=opts.warmup_epochs)
    if opts.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def objective_metric(cfg: Config) -> str:
    """The metric the trials are selected on, as the trainer reads ``train.valid_metric``: a KG-only
    model (TransH, TransE) is selected on link prediction's MRR (or MR), not on a ranking metric."""
    from ktup.evaluation.metrics import valid_metric_for
    from ktup.registry import MODELS

    return valid_metric_for(cfg.train.valid_metric, bool(MODELS.get(cfg.model.model).uses_rec))


def direction(cfg: Config) -> str:
    return "minimize" if objective_metric(cfg) == "mr" else "maximize"


def open_study(opts: TuneOptions, base: Config, space: dict[str, Param], create: bool = True):
    """Create or load the study; a study of another model or dataset under the name is an error."""
    optuna = _optuna()
    name, url = opts.study_name(base), opts.storage_url(base)
    if opts.storage is None:
        opts.folder_path(base).mkdir(parents=True, exist_ok=True)
    storage = open_storage(url, opts.heartbeat)
    attrs = {"model": opts.model, "dataset": str(base.data.dataset), "valid_metric": base.train.valid_metric}
    existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    if name in existing:
        old = existing[name].user_attrs
        for key in ("model", "dataset", "valid_metric"):
            if key in old and old[key] != attrs[key]:
                raise ConfigError(f"study {name!r} in {url} exists with {key} {old[key]!r}, not {attrs[key]!r}; "
                                  "choose another --study name")
    elif not create:
        raise KtupError(f"study {name!r} not found in {url}")
    # a resumed study must not replay the proposals of its first trials: the seed moves with its size
    n_before = existing[name].n_trials if name in existing else 0
    sampler = optuna.samplers.TPESampler(seed=opts.sampler_seed + opts.worker_index + 7919 * n_before,
                                         constant_liar=True)  # workers in parallel: avoid proposing alike
    try:
        study = optuna.create_study(storage=storage, study_name=name, sampler=sampler, pruner=make_pruner(opts),
                                    direction=direction(base), load_if_exists=True)
    except ValueError as e:  # e.g. the stored study has the other direction
        raise ConfigError(f"study {name!r} in {url}: {str(e).splitlines()[0]}") from None
    if name not in existing:
        for k, v in {**attrs, "space": space_to_dict(space), "pruner": opts.pruner,
                     "overrides": list(opts.overrides)}.items():
            study.set_user_attr(k, v)
    return study


# ---------------------------------------------------------------------- budget
def counted(study) -> int:
    """Finished trials that use the budget: complete, pruned, and failed by an error of their own
    (a trial failed because its process died is retried and does not count)."""
    from optuna.trial import TrialState

    n = 0
    for t in study.get_trials(deepcopy=False):
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
            n += 1
        elif t.state == TrialState.FAIL and "error" in t.user_attrs:
            n += 1
    return n


def _running(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def _fail_stale(study) -> None:
    from optuna.storages import fail_stale_trials

    fail_stale_trials(study)


# ---------------------------------------------------------------------- one trial
class Objective:
    def __init__(self, opts: TuneOptions, base: Config, space: dict[str, Param], dataset, trials_dir: Path):
        self.opts, self.base, self.space, self.dataset, self.trials_dir = opts, base, space, dataset, trials_dir

    def __call__(self, trial) -> float:
        optuna = _optuna()
        from ktup.training import train

        t0 = time.perf_counter()
        cfg = self.base.copy()
        run_dir = self.trials_dir / f"trial-{trial.number:04d}"
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        try:
            for key, p in self.space.items():
                cfg.set(key, p.suggest(trial), source="search space")
            cfg.validate()
        except KtupError as e:
            return self._failed(trial, str(e), t0)

        def report(epoch: int, value: float, record: dict) -> None:
            if not math.isfinite(value):
                raise Pruned(f"non-finite valid {objective_metric(cfg)} at epoch {epoch}")
            trial.report(float(value), epoch)
            if trial.should_prune():
                raise Pruned(f"pruned at epoch {epoch} (valid {objective_metric(cfg)} {value:.4f})")

        try:
            run = train(cfg, dataset=self.dataset, out=str(run_dir), progress="quiet", on_eval=report, test=False)
        except Pruned as e:
            trial.set_user_attr("reason", str(e))
            trial.set_user_attr("seconds", time.perf_counter() - t0)
            raise optuna.TrialPruned(str(e)) from None
        except KtupError as e:  # bad setting, diverged training (NonFiniteLoss), ...
            return self._failed(trial, str(e).splitlines()[0], t0)
        except (RuntimeError, ValueError, FloatingPointError, MemoryError) as e:
            return self._failed(trial, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", t0)
        f = run.final or {}
        value = f.get("best_valid")
        trial.set_user_attr("best_epoch", f.get("best_epoch"))
        trial.set_user_attr("epochs", f.get("epochs"))
        trial.set_user_attr("seconds", time.perf_counter() - t0)
        if value is None or not math.isfinite(float(value)):
            return self._failed(trial, f"no finite valid {objective_metric(cfg)} (got {value})", t0)
        return float(value)

    @staticmethod
    def _failed(trial, message: str, t0: float) -> float:
        trial.set_user_attr("error", message)
        trial.set_user_attr("seconds", time.perf_counter() - t0)
        return float("nan")  # Optuna records the trial as FAIL and the study goes on


# ---------------------------------------------------------------------- the loop
def _say(opts: TuneOptions, line: str) -> None:
    if not opts.quiet:
        print(line, flush=True)


def trial_line(t, metric: str) -> str:
    params = " ".join(f"{k.split('.', 1)[1]}={_fmt(v)}" for k, v in t.params.items())
    state = t.state.name.lower()
    if t.state.name == "COMPLETE" and t.value is not None and math.isfinite(t.value):
        what = f"valid {metric} {t.value:.4f} (best epoch {t.user_attrs.get('best_epoch')}/{t.user_attrs.get('epochs')})"
    else:
        what = t.user_attrs.get("error") or t.user_attrs.get("reason") or ""
    secs = t.user_attrs.get("seconds")
    return f"trial {t.number}: {state} {what} {params}" + (f" [{secs:.0f} s]" if secs is not None else "")


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def work(opts: TuneOptions) -> None:
    """One worker process: run trials until the study's budget (or the timeout) is reached."""
    base, space, _ = prepare(opts)
    study = open_study(opts, base, space, create=opts.worker_index == 0)
    from ktup.data import load_dataset

    dataset = load_dataset(base.data)
    trials_dir = opts.folder_path(base) / "trials"
    trials_dir.mkdir(parents=True, exist_ok=True)
    objective = Objective(opts, base, space, dataset, trials_dir)
    metric = objective_metric(base)
    deadline = None if opts.timeout is None else time.monotonic() + opts.timeout

    def after_trial(study, trial) -> None:
        _say(opts, trial_line(trial, metric))
        if opts.keep == "best":
            prune_run_dirs(study)
        _fail_stale(study)
        if counted(study) + _running(study) >= opts.trials:
            study.stop()

    _fail_stale(study)
    left = opts.trials - counted(study)
    if left <= 0 or counted(study) + _running(study) >= opts.trials:
        return
    remaining = None if deadline is None else max(deadline - time.monotonic(), 0.001)
    study.optimize(objective, n_trials=left, timeout=remaining, callbacks=[after_trial])


def _worker_main(opts: TuneOptions) -> None:  # entry of the extra --jobs processes (spawned)
    import torch

    if opts.base_config().train.threads > 0:
        torch.set_num_threads(opts.base_config().train.threads)
    work(opts)


def prune_run_dirs(study) -> None:
    """``--keep best``: remove the run directories of finished trials other than the best one."""
    from optuna.trial import TrialState

    try:
        best = study.best_trial.number
    except ValueError:
        best = None
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)):
        d = t.user_attrs.get("run_dir")
        if t.number != best and d and Path(d).is_dir():
            shutil.rmtree(d, ignore_errors=True)


def tune(opts: TuneOptions) -> dict[str, Any]:
    """Run (or resume) the study, then write its outputs; returns the summary (``summary.json``)."""
    from ktup.tuning.report import confirm, write_outputs

    base, space, fixed = prepare(opts)
    study = open_study(opts, base, space)
    folder = opts.folder_path(base)
    _say(opts, f"study {study.study_name} ({opts.storage_url(base)}): {opts.model} on {base.data.dataset}, "
               f"objective valid {objective_metric(base)} ({direction(base)}), budget {opts.trials} trials, "
               f"pruner {opts.pruner}; {counted(study)} finished trials already")
    _say(opts, "space: " + "; ".join(p.describe() for p in space.values())
         + (f" (fixed by --set: {', '.join(fixed)})" if fixed else ""))
    t0 = time.perf_counter()
    procs = []
    if opts.jobs > 1:
        ctx = multiprocessing.get_context("spawn")
        for i in range(1, opts.jobs):
            o = TuneOptions(**{**opts.__dict__, "worker_index": i, "jobs": 1, "seeds": 0})
            p = ctx.Process(target=_worker_main, args=(o,), name=f"ktup-tune-worker-{i}")
            p.start()
            procs.append(p)
    try:
        work(opts)
    finally:
        for p in procs:
            p.join()
    bad = [f"{p.name} (exit code {p.exitcode})" for p in procs if p.exitcode != 0]
    if bad:
        raise KtupError(f"study {study.study_name}: worker process failed: {', '.join(bad)}; "
                        "its finished trials are kept, run the same command again to resume")
    study = open_study(opts, base, space)
    if opts.keep == "best":
        prune_run_dirs(study)
    summary = write_outputs(study, opts, base, space, folder, seconds=time.perf_counter() - t0)
    if opts.seeds:
        summary["confirmation"] = confirm(study, opts, base, folder)
        from ktup.tuning.report import write_summary

        write_summary(folder, summary)
    return summary


__all__ = ["TuneOptions", "tune", "work", "prepare", "open_study", "counted", "Pruned", "PRUNERS", "KEEP"]
