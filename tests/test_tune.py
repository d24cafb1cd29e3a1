"""``ktup tune``: a tiny study on SQLite, its outputs, pruning, failing trials, resume after
SIGKILL, two processes on one study, and the one-line errors for bad input."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna", reason="optuna is not installed (pip install 'ktup[tune]')")

import ktup  # noqa: E402
from ktup.cli import main  # noqa: E402
from ktup.config import Config  # noqa: E402
from ktup.errors import ConfigError, KtupError  # noqa: E402
from ktup.tuning import TuneOptions, tune  # noqa: E402
from ktup.tuning.spaces import default_space, load_space  # noqa: E402
from test_train_support import one_thread  # noqa: E402

_one_thread = pytest.fixture(autouse=True)(one_thread)

FAST = ["threads=1", "embedding_size=8", "patience=0"]
SRC = str(Path(ktup.__file__).resolve().parents[1])


def _opts(tmp_path: Path, **kw) -> TuneOptions:
    base = dict(model="bpr", dataset="synthetic-tiny", trials=3, folder=str(tmp_path / "study"),
                overrides=[*FAST, "epochs=3"], pruner="none", quiet=True)
    base.update(kw)
    return TuneOptions(**base)


def _load(folder: Path, name: str = "bpr-synthetic-tiny"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder / 'study.db'}")


def _states(study) -> list[str]:
    return [t.state.name for t in study.get_trials()]


def test_tiny_study_on_sqlite_writes_a_usable_best_config(tmp_path, capsys):
    folder = tmp_path / "study"
    assert main(["tune", "--model", "bpr", "--dataset", "synthetic-tiny", "--trials", "3", "--dir", str(folder),
                 "--pruner", "none", *[x for s in [*FAST, "epochs=3"] for x in ("--set", s)]]) == 0
    out = capsys.readouterr().out
    assert "best: trial" in out and "valid ndcg@10" in out
    study = _load(folder)
    assert _states(study) == ["COMPLETE"] * 3
    rows = list(csv.DictReader(open(folder / "trials.csv")))
    assert [r["state"] for r in rows] == ["complete"] * 3 and "train.lr" in rows[0]
    best = Config.from_yaml(folder / "best.yaml")      # what `ktup train --config` reads
    for key, value in study.best_trial.params.items():
        section, name = key.split(".")
        assert getattr(getattr(best, section), name) == value
    assert best.model.model == "bpr" and best.train.epochs == 3 and best.model.embedding_size == 8
    assert {"history.png", "importance.png", "contour.png"} <= {p.name for p in (folder / "plots").iterdir()}
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["best_value"] == pytest.approx(study.best_value) and summary["trials"] == {"complete": 3}
    for t in study.trials:  # every trial is a normal, finished run directory; test never evaluated
        run = Path(t.user_attrs["run_dir"])
        assert json.loads((run / "run.json").read_text())["status"] == "finished"
        final = json.loads((run / "final.json").read_text())
        assert "test" not in final and final["test_evaluated"] is False
        assert final["best_valid"] == pytest.approx(t.value)


def test_the_test_split_is_never_evaluated_while_tuning(tmp_path, monkeypatch):
    from ktup.training.trainer import Trainer

    seen = []
    real = Trainer._evaluate

    def spy(self, split, kind):
        seen.append(split)
        return real(self, split, kind)

    monkeypatch.setattr(Trainer, "_evaluate", spy)
    tune(_opts(tmp_path, trials=2))
    assert seen and set(seen) == {"valid"}
    seen.clear()
    tune(_opts(tmp_path, trials=2, seeds=1))  # the confirmation (after the search) does use test
    assert "test" in seen


def test_pruning_stops_poor_trials_early(tmp_path):
    tune(_opts(tmp_path, trials=6, pruner="median", startup_trials=1, overrides=[*FAST, "epochs=4"]))
    study = _load(tmp_path / "study")
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    assert pruned, _states(study)
    for t in pruned:
        assert t.last_step < 4  # stopped before the epoch cap
        info = json.loads((Path(t.user_attrs["run_dir"]) / "run.json").read_text())
        assert info["status"] == "pruned" and info["epochs_done"] == t.last_step
    assert any(t.state.name == "COMPLETE" for t in study.trials)


def test_halving_pruner_and_keep_best(tmp_path):
    tune(_opts(tmp_path, trials=4, pruner="halving", keep="best", overrides=[*FAST, "epochs=4"]))
    study = _load(tmp_path / "study")
    kept = sorted(p.name for p in (tmp_path / "study" / "trials").iterdir())
    assert kept == [f"trial-{study.best_trial.number:04d}"]


def test_a_failing_trial_does_not_stop_the_study(tmp_path, monkeypatch):
    import ktup.training

    real, calls = ktup.training.train, []

    def flaky(cfg, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KtupError("simulated failure")
        if len(calls) == 3:  # a trial whose validation metric is not finite
            kw["on_eval"](1, float("nan"), {})
        return real(cfg, **kw)

    monkeypatch.setattr(ktup.training, "train", flaky)
    tune(_opts(tmp_path, trials=4))
    study = _load(tmp_path / "study")
    assert _states(study) == ["COMPLETE", "FAIL", "PRUNED", "COMPLETE"]
    assert study.trials[1].user_attrs["error"] == "simulated failure"
    assert "non-finite" in study.trials[2].user_attrs["reason"]
    assert (tmp_path / "study" / "best.yaml").exists()


def test_a_diverging_trial_is_recorded_as_failed(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("extends: none\ntrain.lr: {choices: [1.0e+30]}\n")
    tune(_opts(tmp_path, trials=1, space=str(space), overrides=[*FAST, "epochs=3", "optimizer=sgd"]))
    t = _load(tmp_path / "study").trials[0]
    assert t.state.name == "FAIL" and "non-finite" in t.user_attrs["error"]


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _tune_cmd(folder: Path, trials: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ktup", "tune", "--model", "bpr", "--dataset", "synthetic-tiny", "--trials",
            str(trials), "--dir", str(folder), "--pruner", "none", "--quiet", "--heartbeat", "1",
            *[x for s in [*FAST, "epochs=20"] for x in ("--set", s)], *extra]


def test_sigkill_then_rerun_resumes_the_study(tmp_path):
    folder = tmp_path / "study"
    proc = subprocess.Popen(_tune_cmd(folder, 3), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    done: list = []
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
        if not (folder / "study.db").exists():
            continue
        try:
            trials = _load(folder).get_trials()
        except Exception:  # noqa: BLE001 - the study is still being created
            continue
        done = [t for t in trials if t.state.name == "COMPLETE"]
        if done and any(t.state.name == "RUNNING" and len(t.params) == 4 for t in trials):  # training
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert done, "no trial finished before the kill"
    before = {t.number: t.value for t in _load(folder).get_trials() if t.state.name == "COMPLETE"}
    killed = [t.number for t in _load(folder).get_trials() if t.state.name == "RUNNING"]
    assert len(killed) == 1
    time.sleep(4.5)  # the dead worker's heartbeat must be older than the grace period (4 x 1 s)

    assert main(["tune", "--model", "bpr", "--dataset", "synthetic-tiny", "--trials", "3", "--dir", str(folder),
                 "--pruner", "none", "--quiet", "--heartbeat", "1",
                 *[x for s in [*FAST, "epochs=20"] for x in ("--set", s)]]) == 0
    trials = _load(folder).get_trials()
    for number, value in before.items():  # finished trials kept as they were
        assert trials[number].state.name == "COMPLETE" and trials[number].value == value
    assert trials[killed[0]].state.name == "FAIL" and "error" not in trials[killed[0]].user_attrs
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed[0]]
    assert len(retried) == 1 and retried[0].params == trials[killed[0]].params
    assert sum(t.state.name == "COMPLETE" for t in trials) == 3  # the budget, the killed trial not counted


def test_two_processes_share_one_study(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    url = f"sqlite:///{folder / 'shared.db'}"
    common = ["--storage", url, "--study", "shared"]
    # the first creates the study; the second joins it (separate sampler seeds: separate proposals)
    procs = [subprocess.Popen(_tune_cmd(folder / f"w{i}", 4, *common, "--sampler-seed", str(i)),
                              env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for i in range(2)]
    for p in procs:
        p.wait(timeout=300)
        assert p.returncode == 0, p.stderr.read().decode()[-2000:]
    study = optuna.load_study(study_name="shared", storage=url)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert 4 <= len(complete) <= 5  # the budget (a worker may start one trial as the other finishes the last)
    assert len({t.user_attrs["worker"] for t in complete}) == 2
    assert len({t.number for t in complete}) == len(complete)


def test_jobs_runs_worker_processes(tmp_path):
    # tune() raises if a worker process fails; with tiny trials the second worker (spawned, it
    # imports torch first) may find the budget already used up, so which worker ran what is not asserted
    tune(_opts(tmp_path, trials=4, jobs=2, overrides=[*FAST, "epochs=2"]))
    study = _load(tmp_path / "study")
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert 4 <= len(complete) <= 5


# ---------------------------------------------------------------------- spaces and bad input
def test_space_file_overrides_the_default(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("lr: {low: 1e-4, high: 1e-2, log: true}\ntrain.weight_decay: null\n"
                 "embedding_size: {low: 8, high: 32, step: 8}\nmodel.norm: [l1, l2]\n")
    space = load_space(f, "ktup")
    assert space["train.lr"].low == 1e-4 and space["train.lr"].log
    assert "train.weight_decay" not in space and space["model.embedding_size"].step == 8
    assert space["model.norm"].choices == ("l1", "l2")
    assert set(default_space("ktup")) - {"train.weight_decay"} <= set(space)
    f.write_text("extends: none\nlr: [0.001, 0.002]\n")
    assert list(load_space(f, "bpr")) == ["train.lr"]


def test_set_fixes_a_setting_and_removes_it_from_the_space(tmp_path, capsys):
    tune(_opts(tmp_path, trials=1, quiet=False, overrides=[*FAST, "epochs=1", "lr=0.005"]))
    out = capsys.readouterr().out
    assert "fixed by --set: train.lr" in out
    t = _load(tmp_path / "study").trials[0]
    assert "train.lr" not in t.params and Config.from_yaml(tmp_path / "study" / "best.yaml").train.lr == 0.005


@pytest.mark.parametrize("content, message", [
    ("lerning_rate: {low: 0.001, high: 0.01}", "unknown config key 'lerning_rate'"),
    ("lr: {low: 0.01, high: 0.001}", "empty range"),
    ("lr: {low: 0.01, high: 0.01}", "empty range"),
    ("weight_decay: {low: 0, high: 0.001, log: true}", "touches 0"),
    ("lr: {low: 0.001, high: 0.01, scale: log}", "unknown field 'scale'"),
    ("norm: {low: 1, high: 2}", "give choices instead"),
    ("joint_lambda: {low: 0.5, high: 1.5}", "train.joint_lambda = 1.5 is not a valid setting"),
    ("lr: {choices: []}", "non-empty list"),
])
def test_bad_space_is_one_line_error_before_any_trial(tmp_path, capsys, content, message):
    f = tmp_path / "space.yaml"
    f.write_text(content + "\n")
    folder = tmp_path / "study"
    rc = main(["tune", "--model", "ktup", "--dataset", "synthetic-tiny", "--trials", "2", "--space", str(f),
               "--dir", str(folder), "--set", "epochs=1"])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and str(f) in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not folder.exists()


@pytest.mark.parametrize("url", ["sqlite:////nonexistent-dir/x/study.db", "notadb://x", "postgresql+nodriver://h/db"])
def test_storage_that_cannot_be_opened_is_one_line_error(tmp_path, capsys, url):
    rc = main(["tune", "--model", "bpr", "--dataset", "synthetic-tiny", "--trials", "1", "--storage", url,
               "--dir", str(tmp_path / "study")])
    err = capsys.readouterr().err
    assert rc == 2 and f"--storage {url}: cannot open" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "study" / "trials").exists()


def test_study_name_of_another_model_is_an_error(tmp_path, capsys):
    tune(_opts(tmp_path, trials=1, study="mine", overrides=[*FAST, "epochs=1"]))
    rc = main(["tune", "--model", "tup", "--dataset", "synthetic-tiny", "--trials", "2", "--study", "mine",
               "--dir", str(tmp_path / "study"), "--set", "epochs=1"])
    err = capsys.readouterr().err
    assert rc == 2 and "study 'mine'" in err and "model 'bpr', not 'tup'" in err
    assert len(err.strip().splitlines()) == 1
    assert len(_load(tmp_path / "study", "mine").trials) == 1  # nothing ran


def test_bad_options_are_one_line_errors(tmp_path):
    for kw, msg in ((dict(trials=0), "--trials"), (dict(jobs=0), "--jobs"), (dict(pruner="x"), "--pruner"),
                    (dict(model="nope"), "model")):
        with pytest.raises(ConfigError, match=msg):
            tune(_opts(tmp_path, **kw))


def test_processes_opening_a_new_database_together_all_succeed(tmp_path):
    # they race to create its tables and version row; each must retry rather than fail
    url = f"sqlite:///{tmp_path / 'new.db'}"
    code = "import sys; from ktup.tuning.study import open_storage; open_storage(sys.argv[1], 30); print('ok')"
    procs = [subprocess.Popen([sys.executable, "-c", code, url], env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for _ in range(4)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and out.decode().strip() == "ok", err.decode()[-2000:]


def test_every_registered_model_has_a_default_space_of_valid_keys():
    """A newly registered model is tunable at once: its default space exists and every key is a config key."""
    from ktup.config import resolve_key
    from ktup.registry import MODELS
    from ktup.tuning.spaces import default_space

    for name in MODELS.choices():
        space = default_space(name)
        assert space, name
        for key in space:
            resolve_key(key)


def test_a_model_without_its_own_space_gets_the_generic_one_and_an_unknown_model_is_one_line(monkeypatch):
    from ktup.errors import ConfigError
    from ktup.tuning import spaces

    monkeypatch.delitem(spaces.DEFAULT_SPACES, "cfkg")
    assert set(spaces.default_space("cfkg")) == set(spaces.GENERIC_SPACE)
    with pytest.raises(ConfigError, match="must be one of"):
        spaces.default_space("nosuch")


def test_a_kg_only_model_is_tuned_on_and_labelled_with_link_prediction_mrr(tmp_path):
    # transh ranks no items: the trainer selects it on valid MRR, and the study must say so
    summary = tune(_opts(tmp_path, model="transh", trials=2, overrides=[*FAST, "epochs=2"]))
    assert summary["objective"] == "valid mrr" and summary["direction"] == "maximize"
    rows = (tmp_path / "study" / "trials.csv").read_text()
    assert "ndcg" not in rows
