"""Layers import downwards: loading a run to explain or serve it never imports the trainer, and
the dataset readers have no import cycle."""

import subprocess
import sys


def _modules_after(code: str) -> set:
    out = subprocess.run([sys.executable, "-c", code + "; import sys; print('\\n'.join(sys.modules))"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def test_explain_and_serving_do_not_import_the_trainer():
    mods = _modules_after("import ktup.explain.recommender, ktup.serving.app, ktup.serving.export, "
                          "ktup.serving.loading, ktup.runs")
    assert not {m for m in mods if m.startswith("ktup.training")}


def test_layouts_does_not_import_formats():
    mods = _modules_after("import ktup.data.layouts")
    assert "ktup.data.formats" not in mods


def test_old_run_module_paths_still_work():
    import ktup.runs
    import ktup.runs.checkpoint
    import ktup.training.checkpoint
    import ktup.training.runs

    assert ktup.training.runs is ktup.runs and ktup.training.checkpoint is ktup.runs.checkpoint
