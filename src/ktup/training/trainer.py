"""The training loop: joint schedules, validation, early stopping, checkpoints, resume.

``train(config)`` builds the dataset and model, writes a run directory (see
:mod:`ktup.runs`) and returns a :class:`Run`. Each epoch's randomness is derived from
``(seed, epoch)`` and checkpoints are taken at epoch boundaries, so ``train(resume=RUN)``
continues a killed run to bitwise the same result as an uninterrupted one (on CPU).
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ktup.config import Config
from ktup.evaluation.metrics import valid_metric_for
from ktup.errors import ConfigError, KtupError, RunError
from ktup.training import distributed as dist_
from ktup import runs
from ktup.training.batches import EpochRandom, KGStream, derived_seed
from ktup.runs.checkpoint import (atomic_write_text, encode_checkpoint, keep_previous, load_checkpoint, rng_state,
                                     save_checkpoint, set_rng_state)
from ktup.runs.lock import RunLock, lock_run_dir
from ktup.training.progress import Progress, write_plots
from ktup.training.setup import (build_optimizer, check_optimizer, device_for, finite_params, init_from, make_samplers,
                                 metric_k, timestamp, uses_sparse)
from ktup.training.compiled import CompiledLosses, check_compile, compile_failure
from ktup.training.callbacks import CallbackList, Plots, ProgressLogger, trackers_from_config
from ktup.training.sparse import add_weight_decay_, clip_grad_norm_, enable_sparse
from ktup.training.schedule import KG, REC, SUM, epoch_plan, joint_loss, n_batches

# Keys that may change when a run is resumed; anything else would make it a different run.
RESUMABLE_KEYS = {"train.trackers", "train.epochs", "train.patience", "train.eval_every", "train.device", "train.threads",
                  "train.nproc", "train.dist_backend"}
RANK_STREAM = 4  # derived_seed(seed, RANK_STREAM, rank): the negatives of ranks > 0


class NonFiniteLoss(KtupError):
    """Training diverged; the run stops before the bad step is applied."""


# ====================================================================== public API
def train(config: Optional[Config] = None, dataset=None, out: Optional[str] = None,
          resume: Optional[str] = None, progress: str = "bar", on_eval=None, test: bool = True,
          callbacks=()) -> runs.Run:
    """Train a model and return its :class:`~ktup.runs.Run` (best checkpoint loaded).

    ``config``: the full configuration (``None`` with ``resume`` reuses the run's own).
    ``dataset``: an in-memory :class:`KGDataset` (else ``load_dataset(config.data)``).
    ``out``: run directory (default ``runs/<model>-<dataset>-<timestamp>``).
    ``resume``: a run directory to continue from its ``checkpoints/last.pt``.
    ``progress``: ``bar`` | ``quiet`` | ``jsonl``.
    ``on_eval``: called as ``on_eval(epoch, value, record)`` after each validation (``value`` is
    ``train.valid_metric``, higher = better except ``mr``); an exception it raises stops the run
    (hyperparameter search prunes trials this way, see ``ktup.tuning``).
    ``test=False``: the test split is never evaluated (``final.json`` holds no test metrics).
    ``callbacks``: :class:`~ktup.training.callbacks.Callback` objects, after the trackers that
    ``train.trackers`` names (called on the process that writes the run).
    """
    tc = (config.train if config is not None else
          runs.read_config(runs.check_run_dir(resume)).train if resume is not None else Config().train)
    created = dist_.init_from_env(tc.device, tc.dist_backend)
    try:
        if resume is not None:
            trainer = Trainer.for_resume(resume, config, dataset, progress)
        else:
            if config is None:
                config = Config()
            config.validate()
            trainer = Trainer.for_new_run(config, dataset, out, progress)
        trainer.on_eval, trainer.run_test = on_eval, test
        trainer.set_callbacks(callbacks)
        return trainer.fit()
    finally:
        dist_.shutdown(created)


# ====================================================================== trainer
class Trainer:
    callbacks: Optional[CallbackList] = None   # set_callbacks() (fit() sets the defaults if nobody did)
    on_eval = None      # callback(epoch, value, record) after each validation (train(on_eval=...))
    run_test = True     # False: never evaluate the test split (tuning)

    def set_callbacks(self, extra=()) -> None:
        """Progress logging and plots, the trackers of ``train.trackers``, then ``extra``; none on
        ranks > 0 (rank 0 reports)."""
        if not self.dist.is_main:
            self.callbacks = CallbackList(())
            return
        self.callbacks = CallbackList([ProgressLogger(), Plots()] + trackers_from_config(self.config.train.trackers)
                                      + list(extra or ()))

    def __init__(self, config: Config, dataset, run_dir: Path, progress: str, info: dict[str, Any]):
        from ktup.models import build_model

        self.config = config
        self.cfg = config.train
        self.dataset = dataset
        self.run_dir = run_dir
        self.info = info
        self.dist = dist_.info()
        device_for(self.cfg.device)
        self.device = dist_.training_device(self.cfg.device, self.dist)
        from ktup.training.threads import apply_threads

        self.threads, self.threads_reason = apply_threads(self.cfg, config.model)
        self.info["threads"] = self.threads
        # ranks > 0 write nothing: rank 0 owns the run directory
        self.progress = Progress(progress if self.dist.is_main else "quiet",
                                 run_dir / "train.log" if self.dist.is_main else None)
        torch.manual_seed(self.cfg.seed)
        np.random.seed(self.cfg.seed % 2 ** 32)
        self.model = build_model(config.model, dataset).to(self.device)
        wanted = uses_sparse(self.cfg, self.model)
        self.sparse = wanted and dist_.sparse_allowed(self.dist)
        if wanted and not self.sparse:
            self.progress.log("train.sparse: NCCL has no sparse all-reduce; training with dense tables")
        self.sparse_tables = enable_sparse(self.model) if self.sparse else []
        check_compile(self.cfg, self.sparse, self.dist.enabled)
        self.losses = CompiledLosses(self.model) if self.cfg.compile else self.model
        self.ddp: Optional[torch.nn.Module] = None   # DistributedDataParallel(LossModule), see start()
        self.uses_rec = bool(self.model.uses_rec)
        self.uses_kg = bool(self.model.uses_kg)
        if self.uses_rec and len(dataset.train) == 0:
            raise KtupError(f"{dataset.name}: no training interactions for {self.model.name}")
        if self.uses_kg and len(dataset.kg_train) == 0:
            raise KtupError(f"{dataset.name}: no training triples for {self.model.name}")
        # (n,) int64 training interactions and (m, 3) triples on the device
        self.rec_users = torch.as_tensor(dataset.train.users, dtype=torch.long, device=self.device)
        self.rec_items = torch.as_tensor(dataset.train.items, dtype=torch.long, device=self.device)
        kg_train = torch.as_tensor(np.asarray(dataset.kg_train, dtype=np.int64).reshape(-1, 3), device=self.device)
        self.kg_stream = KGStream(kg_train, self.cfg.kg_batch_size, self.cfg.seed)
        self.neg_sampler, self.kg_sampler = make_samplers(dataset, self.cfg, self.device, self.uses_rec, self.uses_kg)
        # progress state (what a checkpoint restores)
        self.epoch = 0                 # completed epochs
        self.global_step = 0
        self.kg_batches_done = 0       # position in the KG stream
        self.best_metric: Optional[float] = None
        self.best_epoch = 0
        self.bad_evals = 0
        self.stopped_early = False
        self._setup_validation()
        self.optimizer: Optional[torch.optim.Optimizer] = None
        self._lock: Optional[RunLock] = None   # rank 0's exclusive lock on run_dir, released by fit()

    def release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # ---------------------------------------------------------------- creation
    @classmethod
    def for_new_run(cls, config: Config, dataset, out: Optional[str], progress: str) -> "Trainer":
        device_for(config.train.device)
        check_optimizer(config.train)
        main = dist_.info().is_main
        # Fail on an unwritable destination before spending time on data or training.
        existed = out is not None and Path(out).exists()
        locks: list[RunLock] = []
        if main:
            if out is not None:
                runs.prepare_run_dir(Path(out))
                locks.append(lock_run_dir(Path(out)))  # another writer there: stop before touching anything
            else:
                runs.check_writable(Path("runs"))
        made = Path(out) if out is not None else None
        try:
            return cls._start_new_run(config, dataset, out, progress, main, locks)
        except BaseException:
            if main and made is not None:  # a run that never started leaves nothing behind
                runs.discard_unstarted(made, existed=existed)
            for lock in locks:
                lock.release()
            raise

    @classmethod
    def _start_new_run(cls, config: Config, dataset, out: Optional[str], progress: str, main: bool,
                       locks: list[RunLock]) -> "Trainer":
        source = "memory"
        if dataset is None:
            from ktup.data import load_dataset

            dataset = load_dataset(config.data)
            source = "config"
        name = Path(str(dataset.name)).name or "dataset"
        run_id = f"{config.model.model}-{name}-{timestamp()}"
        if out is None:
            out_path = Path("runs") / run_id
            if main:
                while out_path.exists():
                    run_id = f"{config.model.model}-{name}-{timestamp()}-{uuid.uuid4().hex[:4]}"
                    out_path = Path("runs") / run_id
                runs.prepare_run_dir(out_path)
                locks.append(lock_run_dir(out_path))
        else:
            out_path = Path(out)
        run_id, out_path = dist_.broadcast_object((run_id, str(out_path)), dist_.info())  # rank 0 names the run
        out_path = Path(out_path)
        from ktup import __version__

        info = {
            "run_id": run_id, "model": config.model.model, "dataset": name, "dataset_source": source,
            "ktup_version": __version__, "status": "running", "split_hash": runs.split_hash(dataset),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "device": config.train.device,
            "epochs_done": 0, "best_epoch": None,
            # how the split was made (a run rebuilt from split.npz says the same split in its results)
            "split": runs.jsonable({k: v for k, v in ((getattr(dataset, "meta", None) or {}).get("split") or {}).items()
                                    if k in ("method", "ratios", "seed")}),
        }
        info["nproc"] = dist_.info().world
        try:
            self = cls(config, dataset, out_path, progress, info)
        except BaseException:
            if main and out is None:
                runs.discard_unstarted(out_path, existed=False)
            raise
        self._lock = locks[0] if locks else None
        if main:
            atomic_write_text(out_path / "config.yaml", config.to_yaml())
            runs.save_split(out_path / "split.npz", dataset)
        self._write_info()
        try:
            if config.train.init_from:
                init_from(self.model, config.train.init_from, dataset, self.device, self.progress.log)
            self.optimizer = build_optimizer(self.cfg, [p for p in self.model.parameters() if p.requires_grad], sparse=self.sparse)
        except BaseException as e:
            self._mark_failed(e)
            raise
        self.progress.log(f"run {run_id}: {config.model.model} on {name} "
                          f"({len(dataset.train)} interactions, {len(dataset.kg_train)} triples) -> {out_path}"
                          + (f", {self.dist.world} processes" if self.dist.enabled else "")
                          + (f", sparse updates of {', '.join(self.sparse_tables)}" if self.sparse_tables else ""))
        self.progress.log(self._header_threads())
        return self

    @classmethod
    def for_resume(cls, run_dir: str, config: Optional[Config], dataset, progress: str) -> "Trainer":
        path = runs.check_run_dir(run_dir)
        # one writer at a time: a second resume of the same run stops here, naming the holder's pid
        lock = lock_run_dir(path) if dist_.info().is_main else None
        try:
            self = cls._resume(path, config, dataset, progress)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        self._lock = lock
        return self

    @classmethod
    def _resume(cls, path: Path, config: Optional[Config], dataset, progress: str) -> "Trainer":
        saved_cfg = runs.read_config(path)
        info = runs.read_json(path / "run.json")
        if config is None:
            config = saved_cfg
        else:
            config.validate()
            old, new = saved_cfg.to_dict(), config.to_dict()
            changed = [f"{s}.{k}" for s in old for k in old[s] if old[s][k] != new[s][k]]
            bad = [k for k in changed if k not in RESUMABLE_KEYS and not k.startswith("eval.")]
            if bad:
                raise ConfigError(f"cannot change {', '.join(bad)} when resuming {path} "
                                  f"(only {', '.join(sorted(RESUMABLE_KEYS))} and eval.*); start a new run instead")
        di = dist_.info()
        state, ckpt_file, notes = runs.resume_checkpoint(
            path, map_location=dist_.training_device(device_for(config.train.device).type, di))
        if di.is_main:
            runs.prepare_run_dir(path, resume=True)
            runs.remove_stale_temps(path)
            last = runs.checkpoint_path(path, "last")
            if ckpt_file is not None and ckpt_file != last:  # replace a damaged last.pt by the good one
                save_checkpoint(last, ckpt_file.read_bytes())
        if dataset is not None:
            dataset = runs.apply_split(dataset, path / "split.npz")
        else:
            dataset = runs.load_run_dataset(path, config, info)
        self = cls(config, dataset, path, progress, info)
        if state is None and config.train.init_from:  # restarting: as a new run would
            init_from(self.model, config.train.init_from, dataset, self.device, self.progress.log)
        self.optimizer = build_optimizer(self.cfg, [p for p in self.model.parameters() if p.requires_grad], sparse=self.sparse)
        if state is not None:
            self._restore(state)
        finished = info.get("status") == "finished"
        if self.epoch >= self.cfg.epochs and finished:
            raise ConfigError(f"{path}: run already finished {self.epoch} epochs; "
                              f"extend it with --set epochs=N (N > {self.epoch})")
        if finished and self.stopped_early:
            self.progress.log(f"run had stopped early at epoch {self.epoch}; patience counter reset to extend it")
            self.bad_evals, self.stopped_early = 0, False
        if di.is_main:
            runs.truncate_metrics(path / "metrics.jsonl", self.epoch)
            atomic_write_text(path / "config.yaml", config.to_yaml())
        self.info["status"] = "running"
        self._write_info()
        for note in notes:
            self.progress.log(note)
            if self.progress.mode != "bar" and di.is_main:  # a damaged checkpoint is always said
                print(f"ktup: warning: {note}", file=sys.stderr, flush=True)
        self.progress.log(f"resuming {path} after epoch {self.epoch} (step {self.global_step})")
        self.progress.log(self._header_threads())
        return self

    def _header_threads(self) -> str:
        return (f"threads: {self.threads} ({self.threads_reason}; set train.threads=N to choose)"
                if self.device.type == "cpu" else f"device: {self.device}")

    # ---------------------------------------------------------------- validation
    def _setup_validation(self) -> None:
        metric = valid_metric_for(self.cfg.valid_metric, self.uses_rec)
        self.ks = tuple(sorted({int(k) for k in self.config.eval.ks}))
        if self.uses_rec:
            k = metric_k(metric)
            if k is not None and k not in self.ks:
                self.ks = tuple(sorted(set(self.ks) | {k}))
            self.valid_kind = "rec" if len(self.dataset.valid) else None
        else:
            self.valid_kind = "kg" if len(self.dataset.kg_valid) else None
        self.valid_metric = metric

    def _evaluate(self, split: str, kind: str, progress: bool = False) -> dict[str, Any]:
        from ktup import evaluation

        ec = self.config.eval
        self.model.eval()
        try:
            with torch.no_grad():
                self.model.prepare_inference()
                if kind == "rec":  # users sharded over ranks when distributed, gathered: same numbers
                    res = dist_.evaluate_recommendation_sharded(
                        self.model, self.dataset, split, ks=self.ks, protocol=ec.protocol,
                        user_batch_size=ec.user_batch_size, memory_budget_mb=ec.memory_budget_mb, di=self.dist)
                else:
                    res = evaluation.evaluate_link_prediction(
                        self.model, self.dataset, split, filtered=True, max_triples=ec.kg_eval_max_triples,
                        progress=progress)
        finally:
            self.model.train()
        return res

    # ---------------------------------------------------------------- state
    def _state(self) -> dict[str, Any]:
        return {
            "format": 1, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "rng": rng_state(), "epoch": self.epoch, "global_step": self.global_step,
            "kg_batches_done": self.kg_batches_done, "best_metric": self.best_metric,
            "best_epoch": self.best_epoch, "bad_evals": self.bad_evals, "stopped_early": self.stopped_early,
            "valid_metric": self.valid_metric, "config": self.config.to_dict(), "model_name": self.model.name,
        }

    def _restore(self, s: dict[str, Any]) -> None:
        try:
            self.model.load_state_dict(s["model"])
            self.optimizer.load_state_dict(s["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            from ktup.models.base import describe_load_error

            raise RunError(f"{self.run_dir}: checkpoint does not fit this model/optimiser ({describe_load_error(e)})") from None
        set_rng_state(s["rng"])
        self.epoch, self.global_step = int(s["epoch"]), int(s["global_step"])
        self.kg_batches_done = int(s["kg_batches_done"])
        self.best_metric, self.best_epoch = s["best_metric"], int(s["best_epoch"])
        self.bad_evals, self.stopped_early = int(s["bad_evals"]), bool(s.get("stopped_early", False))

    def _mark_failed(self, e: BaseException) -> None:
        if not self.dist.is_main:
            return
        self.info["status"] = ("interrupted" if isinstance(e, KeyboardInterrupt)
                               else getattr(e, "run_status", "failed"))  # e.g. "pruned" (ktup.tuning)
        self.info["error"] = str(e).splitlines()[0] if str(e) else type(e).__name__
        try:  # the disk may be full or gone: the original error is what the user must see
            self._write_info()
            self.progress.log(f"run {self.info['status']}: {self.info['error']}", echo=False)
        except (OSError, KtupError):
            pass

    def _write_info(self) -> None:
        if not self.dist.is_main:
            return
        atomic_write_text(self.run_dir / "run.json", json.dumps(self.info, indent=2) + "\n")

    # ---------------------------------------------------------------- one epoch
    def _joint_loss(self, rec_args, kg_args, lam, kgw=1.0):
        try:
            return joint_loss(self.losses, rec_args, kg_args, lam, kgw)
        except Exception as e:   # inductor's own errors (no C++ compiler, ...): one line, not its traceback
            failure = compile_failure(e) if self.losses is not self.model else None
            if failure is not None:
                raise failure from None
            raise

    def _run_epoch(self, max_steps: Optional[int] = None) -> dict[str, Any]:
        """Train epoch ``self.epoch + 1`` (0-based index ``self.epoch``); returns its record.

        ``max_steps`` stops after that many steps (benchmarks time part of a huge epoch;
        ``record["planned_steps"]`` is the full epoch's step count)."""
        cfg, e = self.cfg, self.epoch
        t0, c0 = time.perf_counter(), time.process_time()
        rnd = EpochRandom(cfg.seed, e, self.device)
        n_rec = n_batches(len(self.rec_users), cfg.batch_size) if self.uses_rec else 0
        kinds = epoch_plan(e, n_rec, self.kg_stream.batches_per_pass, self.uses_rec, self.uses_kg, cfg)
        # (n,) the same permutation on every rank; each rank trains on its piece of every batch
        perm = (torch.randperm(len(self.rec_users), generator=rnd.rec, device=self.device)
                if (kinds != KG).any() else None)
        if self.dist.rank > 0:  # own negatives and Gumbel noise per rank (rank 0 = single process)
            rnd = EpochRandom(derived_seed(cfg.seed, RANK_STREAM, self.dist.rank), e, self.device)
        lam, kgw = float(cfg.joint_lambda), float(cfg.kg_loss_weight)
        sums = {REC: torch.zeros((), device=self.device), KG: torch.zeros((), device=self.device)}
        counts = {REC: 0, KG: 0}
        rec_b = 0
        params = [p for p in self.model.parameters() if p.requires_grad]
        lazy_wd = self.sparse and cfg.optimizer in ("adagrad", "sgd") and cfg.weight_decay > 0
        bar = self.progress.epoch_bar(e + 1, cfg.epochs, len(kinds))
        try:
            for kind in kinds.tolist()[:max_steps]:
                rec_args = kg_args = None
                if kind in (REC, SUM):
                    idx = dist_.shard(perm[rec_b * cfg.batch_size:(rec_b + 1) * cfg.batch_size], self.dist)
                    rec_b += 1
                    users, pos = self.rec_users[idx], self.rec_items[idx]
                    neg = self.neg_sampler.sample(users, cfg.num_negatives, generator=rnd.rec)
                    rec_args = (users, pos, neg)
                if kind in (KG, SUM):
                    trip = dist_.shard(self.kg_stream.batch(self.kg_batches_done), self.dist)
                    self.kg_batches_done += 1
                    h, r, t = trip[:, 0], trip[:, 1], trip[:, 2]
                    nh, nt = self.kg_sampler.sample(h, r, t, cfg.num_negatives, generator=rnd.kg)
                    kg_args = (h, r, t, nh, nt)
                self.optimizer.zero_grad(set_to_none=True)
                if self.ddp is not None:
                    loss, rec_loss, kg_loss = self.ddp(rec_args, kg_args, lam, kgw)
                else:
                    loss, rec_loss, kg_loss = self._joint_loss(rec_args, kg_args, lam, kgw)
                if not dist_.all_finite(loss, self.dist):  # every rank stops together
                    raise NonFiniteLoss(self._nonfinite_message(kind, rec_loss, kg_loss))
                loss.backward()
                if cfg.grad_clip > 0:
                    if self.sparse:
                        clip_grad_norm_(params, cfg.grad_clip)
                    else:
                        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                if lazy_wd:
                    add_weight_decay_(params, cfg.weight_decay)
                self.optimizer.step()
                self.model.constrain_()
                self.global_step += 1
                for k, v in ((REC, rec_loss), (KG, kg_loss)):
                    if v is not None:
                        sums[k] += v.detach()
                        counts[k] += 1
                bar.update(1)
        finally:
            bar.close()
        if self.dist.enabled:  # mean over ranks of the per-rank mean losses
            rs, ks_ = dist_.all_reduce_sum([float(sums[REC]), float(sums[KG])], self.device, self.dist)
            sums = {REC: torch.tensor(rs / self.dist.world), KG: torch.tensor(ks_ / self.dist.world)}
        record: dict[str, Any] = {"epoch": e + 1, "step": self.global_step,
                                  "rec_loss": float(sums[REC]) / counts[REC] if counts[REC] else None,
                                  "kg_loss": float(sums[KG]) / counts[KG] if counts[KG] else None,
                                  "rec_steps": counts[REC], "kg_steps": counts[KG]}
        if max_steps is not None:
            record["planned_steps"] = int(len(kinds))
        record["train_seconds"] = time.perf_counter() - t0
        record["train_cpu_seconds"] = time.process_time() - c0
        return record

    def _nonfinite_message(self, kind, rec_loss, kg_loss) -> str:
        which = {REC: "recommendation", KG: "KG", SUM: "summed"}[kind]
        last = runs.checkpoint_path(self.run_dir, "last")
        keep = f"last good checkpoint {last} (epoch {self.epoch}) kept" if last.exists() else "no checkpoint was written yet"
        return (f"non-finite {which} loss at epoch {self.epoch + 1}, step {self.global_step + 1} "
                f"(rec {None if rec_loss is None else float(rec_loss.detach())}, kg {None if kg_loss is None else float(kg_loss.detach())}); "
                f"training stopped, {keep}; try a lower train.lr or train.grad_clip")

    # ---------------------------------------------------------------- the loop
    def fit(self) -> runs.Run:
        try:
            return self._fit()
        finally:
            self.release_lock()

    def _fit(self) -> runs.Run:
        cfg = self.cfg
        if self.dist.enabled and self.ddp is None:  # after init_from / resume: DDP broadcasts rank 0's weights
            self.ddp = dist_.wrap_ddp(self.model, self.device, self.dist)
        self.model.train()
        try:
            if self.callbacks is None:
                self.set_callbacks()
            self.callbacks.on_train_start(self)
            while self.epoch < cfg.epochs and not self.stopped_early:
                t0 = time.perf_counter()
                self.model.on_epoch_start(self.epoch)
                record = self._run_epoch()
                self.model.on_epoch_end(self.epoch)
                if not finite_params(self.model):
                    raise NonFiniteLoss(f"non-finite weights after epoch {self.epoch + 1}, step {self.global_step}; "
                                        "training stopped, last good checkpoint kept; try a lower train.lr")
                self.epoch += 1
                improved = False
                evaluate = self.valid_kind is not None and (self.epoch % cfg.eval_every == 0 or self.epoch == cfg.epochs)
                if evaluate:
                    res = self._evaluate("valid", self.valid_kind)
                    record["valid"] = {k: float(v) for k, v in res.summary.items()}
                    record["valid_metric"] = self.valid_metric
                    if self.valid_metric not in record["valid"]:
                        raise ConfigError(f"train.valid_metric: {self.valid_metric!r} is not computed; "
                                          f"choose one of {', '.join(record['valid'])}")
                    value = record["valid"][self.valid_metric]
                    if self.valid_metric == "mr":
                        value = -value  # lower mean rank is better
                    if self.best_metric is None or value > self.best_metric:
                        self.best_metric, self.best_epoch, self.bad_evals, improved = value, self.epoch, 0, True
                    else:
                        self.bad_evals += 1
                        if cfg.patience and self.bad_evals >= cfg.patience:
                            self.stopped_early = True
                elif self.valid_kind is None:
                    improved = True  # nothing to validate on: the latest epoch is the best one
                    self.best_epoch = self.epoch
                record["best"] = improved
                record["seconds"] = time.perf_counter() - t0
                # Order matters for resume: metrics line, then best, then last (see _truncate_metrics).
                if self.dist.is_main:
                    with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
                        f.write(json.dumps(record) + "\n")
                    state = encode_checkpoint(self._state())
                    if improved:
                        save_checkpoint(runs.checkpoint_path(self.run_dir, "best"), state)
                    keep_previous(runs.checkpoint_path(self.run_dir, "last"), runs.checkpoint_path(self.run_dir, "prev"))
                    save_checkpoint(runs.checkpoint_path(self.run_dir, "last"), state)
                self.info.update(epochs_done=self.epoch, best_epoch=self.best_epoch)
                self._write_info()
                self.callbacks.on_epoch_end(self, record)   # progress line, trackers, ...
                if evaluate and self.on_eval is not None:
                    self.on_eval(self.epoch, record["valid"][self.valid_metric], record)
            if self.stopped_early:
                self.progress.log(f"early stopping after epoch {self.epoch}: no better valid {self.valid_metric} "
                                  f"for {cfg.patience} evaluations (best epoch {self.best_epoch})")
            elif self.valid_kind is not None:
                self.progress.log(f"stopped at the epoch cap train.epochs={cfg.epochs} before the convergence rule "
                                  f"(train.patience={cfg.patience}) was met, best epoch {self.best_epoch}: "
                                  "the run may not have converged; raise train.epochs or resume with --set epochs=N")
            if self.epoch == 0 and self.dist.is_main and not runs.checkpoint_path(self.run_dir, "last").exists():
                self._save_initial()
            final = self._finish()
            self.callbacks.on_train_end(self, final)
        except BaseException as e:
            self._mark_failed(e)
            try:   # plots, trackers; their own failure must not hide the error that stopped the run
                (self.callbacks or CallbackList([Plots()])).on_train_end(self, None, e)
            except Exception:
                pass
            raise
        self.info.update(status="finished", finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        self.info.pop("error", None)
        self._write_info()
        self.model.eval()
        return runs.Run(path=self.run_dir, config=self.config, dataset=self.dataset, model=self.model,
                        info=dict(self.info), final=final)

    def _save_initial(self) -> None:
        """``epochs=0`` (e.g. to evaluate an ``init_from`` start): keep the untrained state as the
        best and last checkpoint, so the finished run loads in every command and resumes to the
        same result as a run that trained from the start."""
        state = encode_checkpoint(self._state())
        save_checkpoint(runs.checkpoint_path(self.run_dir, "best"), state)
        save_checkpoint(runs.checkpoint_path(self.run_dir, "last"), state)
        self.progress.log("train.epochs=0: the initial weights were saved as the best and last checkpoint")

    def _finish(self) -> dict[str, Any]:
        """Evaluate the best checkpoint on test; write final.json and the final metrics line."""
        t0 = time.perf_counter()
        best = runs.checkpoint_path(self.run_dir, "best")
        src = best if best.exists() else runs.checkpoint_path(self.run_dir, "last")
        if self.dist.is_main and src.exists():
            self.model.load_state_dict(load_checkpoint(src, map_location=self.device)["model"])
        dist_.broadcast_module_(self.model, self.dist)  # the other ranks take rank 0's best weights
        final: dict[str, Any] = {"final": True, "run_id": self.info["run_id"], "model": self.model.name,
                                 "dataset": self.info["dataset"], "epochs": self.epoch, "steps": self.global_step,
                                 "best_epoch": self.best_epoch, "stopped_early": self.stopped_early,
                                 "stop_reason": "patience" if self.stopped_early else "epoch cap",
                                 "converged": bool(self.stopped_early),
                                 "valid_metric": self.valid_metric,
                                 "best_valid": None if self.best_metric is None else
                                 (-self.best_metric if self.valid_metric == "mr" else self.best_metric)}
        if not self.run_test:
            final["test_evaluated"] = False
        elif self.uses_rec and len(self.dataset.test):
            res = self._evaluate("test", "rec")
            final["test"] = {k: float(v) for k, v in res.summary.items()}
            final["protocol"] = runs.jsonable(getattr(res, "protocol", self.config.eval.protocol))
            final["test_users"] = int(getattr(res, "n_users", 0))
        if self.run_test and self.uses_kg and self.config.eval.kg_eval and len(self.dataset.kg_test):
            n_all, n_max = len(self.dataset.kg_test), self.config.eval.kg_eval_max_triples
            which = (f"a seeded sample of {n_max} of the {n_all} test triples (eval.kg_eval_max_triples=0 for all)"
                     if 0 < n_max < n_all else f"all {n_all} test triples")
            self.progress.log(f"KG link prediction on {which} ...")
            res = self._evaluate("test", "kg", progress=self.progress.mode == "bar")
            final["kg_test"] = runs.jsonable(res.summary)
            final["kg_protocol"] = {"name": "link prediction, filtered, realistic ties",
                                    "max_triples": n_max, "triples": res.n_triples, "triples_available": n_all,
                                    "sample_seed": res.sample_seed}
        final["seconds"] = time.perf_counter() - t0
        final["run_dir"] = str(self.run_dir)
        if not self.dist.is_main:
            return final
        atomic_write_text(self.run_dir / "final.json", json.dumps(final, indent=2) + "\n")
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(final) + "\n")
        if self.progress.mode == "jsonl":
            print(json.dumps(final), flush=True)
        return final

    def write_plots(self) -> None:
        """``RUN/plots/*.png`` from ``metrics.jsonl`` (the :class:`Plots` callback calls it)."""
        if not self.dist.is_main:
            return
        try:
            write_plots(self.run_dir, runs.read_metrics(self.run_dir / "metrics.jsonl"), self.valid_metric)
        except Exception as e:  # noqa: BLE001 - a plot must never fail a run
            self.progress.log(f"could not draw plots: {e}", echo=False)
