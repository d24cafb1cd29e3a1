from ktup.data.dataset import UNLINKED, IdMap, Interactions, KGDataset  # noqa: F401
