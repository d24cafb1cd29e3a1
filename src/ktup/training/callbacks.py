"""Trainer callbacks and result trackers.

A :class:`Callback` sees the run start, every finished epoch (its record: losses, validation
metrics, whether it was the best) and the end (the final results, or the error that stopped
it). The trainer calls callbacks on the process that writes the run (rank 0), after the epoch's
metrics line and checkpoints are on disk, so a callback can never lose training state.

Result trackers are callbacks too, chosen by ``train.trackers`` (names of :data:`TRACKERS`) or
passed to ``train(callbacks=[...])``:

* ``tensorboard``: scalars ``train/rec_loss``, ``train/kg_loss``, ``valid/<metric>`` per epoch and
  ``test/<metric>`` at the end, in ``RUN/tensorboard`` (extra ``ktup[tensorboard]``);
* ``mlflow``: one MLflow run per ktup run (named by its run id) with the flattened config as
  parameters and the same metrics (``@`` written ``_at_``: MLflow does not allow it), tracked
  where ``MLFLOW_TRACKING_URI`` says, else MLflow's default (extra ``ktup[mlflow]``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

from ktup.errors import ConfigError
from ktup.registry import TRACKERS


class Callback:
    """No-op base: override what you need. ``trainer`` is the running
    :class:`ktup.training.trainer.Trainer` (``run_dir``, ``config``, ``model``, ``epoch``, ``info``)."""

    def on_train_start(self, trainer) -> None:
        pass

    def on_epoch_end(self, trainer, record: dict[str, Any]) -> None:
        pass

    def on_train_end(self, trainer, final: Optional[dict[str, Any]], error: Optional[BaseException] = None) -> None:
        pass


class ProgressLogger(Callback):
    """The epoch's line (bar, log or JSON line, as ``progress`` chose) and ``train.log``."""

    def on_epoch_end(self, trainer, record) -> None:
        trainer.progress.epoch_done(record)


class Plots(Callback):
    """``RUN/plots/loss.png`` and ``valid.png`` when the run ends (finished or failed)."""

    def on_train_end(self, trainer, final, error=None) -> None:
        trainer.write_plots()


def _scalars(record: dict[str, Any]) -> dict[str, float]:
    out = {f"train/{k}": float(record[k]) for k in ("rec_loss", "kg_loss") if record.get(k) is not None}
    for k, v in (record.get("valid") or {}).items():
        if isinstance(v, (int, float)):
            out[f"valid/{k}"] = float(v)
    return out


def _final_scalars(final: Optional[dict[str, Any]]) -> dict[str, float]:
    out = {}
    for part, prefix in (("test", "test"), ("kg_test", "kg_test")):
        for k, v in ((final or {}).get(part) or {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[f"{prefix}/{k}"] = float(v)
    return out


class TensorBoardTracker(Callback):
    """Scalars per epoch in a TensorBoard log directory (default ``RUN/tensorboard``)."""

    def __init__(self, log_dir: Optional[str] = None):
        try:
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401
        except ImportError as e:
            raise ConfigError(f"train.trackers: tensorboard needs the tensorboard package "
                              f"(pip install 'ktup[tensorboard]'): {e}") from None
        self.log_dir, self.writer = log_dir, None

    def on_train_start(self, trainer) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(self.log_dir or Path(trainer.run_dir) / "tensorboard"))

    def on_epoch_end(self, trainer, record) -> None:
        for k, v in _scalars(record).items():
            self.writer.add_scalar(k, v, int(record["epoch"]))
        self.writer.flush()

    def on_train_end(self, trainer, final, error=None) -> None:
        if self.writer is None:
            return
        for k, v in _final_scalars(final).items():
            self.writer.add_scalar(k, v, int(trainer.epoch))
        self.writer.close()
        self.writer = None


def _mlflow_name(key: str) -> str:
    return key.replace("@", "_at_")


class MLflowTracker(Callback):
    """One MLflow run per ktup run: config as parameters, metrics per epoch, test at the end."""

    def __init__(self, tracking_uri: Optional[str] = None, experiment: str = "ktup"):
        try:
            from mlflow.tracking import MlflowClient  # noqa: F401
        except ImportError as e:
            raise ConfigError(f"train.trackers: mlflow needs the mlflow package (pip install 'ktup[mlflow]'): {e}") from None
        self.tracking_uri, self.experiment = tracking_uri, experiment
        self.client = self.run_id = None

    def on_train_start(self, trainer) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        exp = self.client.get_experiment_by_name(self.experiment)
        exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(self.experiment)
        run = self.client.create_run(exp_id, run_name=str(trainer.info.get("run_id")),
                                     tags={"ktup.run_dir": str(trainer.run_dir)})
        self.run_id = run.info.run_id
        params = [Param(f"{sec}.{k}", str(v)[:500]) for sec, d in trainer.config.to_dict().items() for k, v in d.items()]
        for start in range(0, len(params), 100):       # MLflow takes at most 100 parameters per batch
            self.client.log_batch(self.run_id, params=params[start:start + 100])

    def _log(self, scalars: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(_mlflow_name(k), v, now, step) for k, v in scalars.items()]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def on_epoch_end(self, trainer, record) -> None:
        self._log(_scalars(record), int(record["epoch"]))

    def on_train_end(self, trainer, final, error=None) -> None:
        if self.client is None:
            return
        self._log(_final_scalars(final), int(trainer.epoch))
        status = "FINISHED" if error is None else "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
        self.client.set_terminated(self.run_id, status)
        self.client = None


def trackers_from_config(names) -> list[Callback]:
    return [TRACKERS.get(n)() for n in names]


class CallbackList(Callback):
    """Calls each callback in order."""

    def __init__(self, callbacks):
        self.callbacks = list(callbacks)

    def on_train_start(self, trainer) -> None:
        for c in self.callbacks:
            c.on_train_start(trainer)

    def on_epoch_end(self, trainer, record) -> None:
        for c in self.callbacks:
            c.on_epoch_end(trainer, record)

    def on_train_end(self, trainer, final, error=None) -> None:
        for c in self.callbacks:
            c.on_train_end(trainer, final, error)
