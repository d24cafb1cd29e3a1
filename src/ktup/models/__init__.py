from ktup.models.base import Model  # noqa: F401
