"""Training: joint schedules, run directories, checkpoints and resume.

    from ktup.config import Config
    from ktup.training import train, load_run
    run = train(Config.from_dict({"model": {"model": "ktup"}, "train": {"epochs": 5}}))
    print(run.final["test"], run.path)
"""

from ktup.training.runs import Run, load_run
from ktup.training.trainer import NonFiniteLoss, train

__all__ = ["train", "load_run", "Run", "NonFiniteLoss"]
