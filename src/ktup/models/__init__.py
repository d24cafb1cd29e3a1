"""Models by name: ``MODELS[name]`` and ``build_model(model_cfg, dataset)``."""

from ktup.models.base import Model  # noqa: F401
from ktup.models.bpr import BPRMF
from ktup.models.cfkg import CFKG
from ktup.models.cke import CKE
from ktup.models.kgat import KGAT
from ktup.models.kg import TransE, TransH
from ktup.models.transr import TransR
from ktup.models.tup import KTUP, TUP

MODELS: dict[str, type[Model]] = {"ktup": KTUP, "tup": TUP, "transh": TransH, "transe": TransE, "bpr": BPRMF,
                              "transr": TransR, "cke": CKE, "cfkg": CFKG, "kgat": KGAT}


def build_model(model_cfg, dataset) -> Model:
    """Build ``model_cfg.model`` for ``dataset`` (a :class:`ktup.data.KGDataset`)."""
    from ktup.errors import ConfigError

    try:
        cls = MODELS[model_cfg.model]
    except KeyError:
        raise ConfigError(f"model.model: unknown model {model_cfg.model!r} ({', '.join(MODELS)})") from None
    return cls.build(model_cfg, dataset)


__all__ = ["MODELS", "Model", "build_model", "KTUP", "TUP", "TransH", "TransE", "BPRMF", "TransR", "CKE", "CFKG", "KGAT"]
