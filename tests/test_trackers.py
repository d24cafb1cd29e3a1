"""Result trackers as trainer callbacks: a tiny run written to a local MLflow file store and a
TensorBoard log directory, read back with each library's own reader."""

from __future__ import annotations

import pytest

from ktup.config import Config
from ktup.errors import ConfigError
from ktup.training.callbacks import Callback

from test_serving_runs import make_dataset


def _config(**train) -> Config:
    return Config.from_dict({"model": {"model": "bpr", "embedding_size": 4},
                             "train": {"epochs": 2, "batch_size": 16, "threads": 1, **train}})


def test_callbacks_see_every_epoch_and_the_end(tmp_path):
    from ktup.training import train

    seen = []

    class Spy(Callback):
        def on_train_start(self, trainer):
            seen.append(("start", trainer.epoch))

        def on_epoch_end(self, trainer, record):
            seen.append(("epoch", record["epoch"], "ndcg@10" in record["valid"]))

        def on_train_end(self, trainer, final, error=None):
            seen.append(("end", "test" in final, error))

    train(_config(), dataset=make_dataset(), out=str(tmp_path / "r"), progress="quiet", callbacks=[Spy()])
    assert seen == [("start", 0), ("epoch", 1, True), ("epoch", 2, True), ("end", True, None)]


def test_unknown_tracker_is_a_config_error():
    with pytest.raises(ConfigError, match="train.trackers: must be one of tensorboard, mlflow; got 'wandb'"):
        _config(trackers=["wandb"])


def test_tensorboard_tracker_writes_readable_scalars(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed (pip install 'ktup[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from ktup.training import train

    run = train(_config(trackers=["tensorboard"]), dataset=make_dataset(), out=str(tmp_path / "r"), progress="quiet")
    acc = EventAccumulator(str(run.path / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"train/rec_loss", "valid/ndcg@10", "test/ndcg@10"} <= set(tags)
    assert [e.step for e in acc.Scalars("valid/ndcg@10")] == [1, 2]
    assert acc.Scalars("test/ndcg@10")[0].value == pytest.approx(run.final["test"]["ndcg@10"], rel=1e-6)


def test_mlflow_tracker_writes_a_readable_run(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed (pip install 'ktup[mlflow]')")
    from mlflow.tracking import MlflowClient

    from ktup.training import train

    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")   # MLflow 3 keeps the file store behind this switch
    run = train(_config(trackers=["mlflow"]), dataset=make_dataset(), out=str(tmp_path / "r"), progress="quiet")
    client = MlflowClient(tracking_uri=uri)
    (found,) = client.search_runs([client.get_experiment_by_name("ktup").experiment_id])
    assert found.info.run_name == run.info["run_id"] and found.info.status == "FINISHED"
    assert found.data.params["model.model"] == "bpr" and found.data.params["train.epochs"] == "2"
    history = client.get_metric_history(found.info.run_id, "valid/ndcg_at_10")
    assert sorted(m.step for m in history) == [1, 2]
    assert found.data.metrics["test/ndcg_at_10"] == pytest.approx(run.final["test"]["ndcg@10"], rel=1e-6)
