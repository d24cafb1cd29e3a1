"""ktup: KTUP (Cao et al., WWW 2019) — knowledge-graph-aware recommendation that explains itself."""

__version__ = "0.1.0"

from ktup.errors import KtupError, DataError, ConfigError  # noqa: E402,F401
