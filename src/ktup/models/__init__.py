"""Models by name: ``MODELS[name]`` (the registry of :mod:`ktup.registry`) and ``build_model(model_cfg, dataset)``."""

from ktup.models.base import Model  # noqa: F401
from ktup.models.bpr import BPRMF
from ktup.models.kg import TransE, TransH
from ktup.models.tup import KTUP, TUP

from ktup.registry import MODELS  # noqa: E402  (names → classes; one line per model in ktup/registry.py)


def build_model(model_cfg, dataset) -> Model:
    """Build ``model_cfg.model`` for ``dataset`` (a :class:`ktup.data.KGDataset`)."""
    return MODELS.get(model_cfg.model).build(model_cfg, dataset)


__all__ = ["MODELS", "Model", "build_model", "KTUP", "TUP", "TransH", "TransE", "BPRMF"]
