from ktup.data.dataset import UNLINKED, IdMap, Interactions, KGDataset  # noqa: F401


def load_dataset(cfg):  # noqa: D401 - thin lazy wrapper, keeps `import ktup.data` light
    """Resolve ``cfg.dataset`` (name or path), read, filter and split it: see ``ktup.data.registry``."""
    from ktup.data.registry import load_dataset as _load

    return _load(cfg)
