"""Training: joint schedules, samplers, sparse updates, callbacks, data-parallel training.

    from ktup.config import Config
    from ktup.training import train, load_run
    run = train(Config.from_dict({"model": {"model": "ktup"}, "train": {"epochs": 5}}))
    print(run.final["test"], run.path)

Run directories, checkpoints and the run lock live in :mod:`ktup.runs` (so that explaining and
serving never import the trainer); ``ktup.training.runs``, ``.checkpoint`` and ``.lock`` still
name those modules for older code.
"""

import sys as _sys

from ktup import runs
from ktup.runs import Run, checkpoint, load_run, lock
from ktup.training.trainer import NonFiniteLoss, train

for _name, _module in (("runs", runs), ("checkpoint", checkpoint), ("lock", lock)):
    _sys.modules.setdefault(f"{__name__}.{_name}", _module)

__all__ = ["train", "load_run", "Run", "NonFiniteLoss"]
