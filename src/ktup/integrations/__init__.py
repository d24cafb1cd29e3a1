"""Adapters that run ktup's models inside other frameworks.

Each submodule imports its framework and is therefore imported only on demand: the core
package never imports them (``import ktup`` works without RecBole installed).

- :mod:`ktup.integrations.recbole` — our KTUP as a RecBole 1.2.1 model class, trained and
  evaluated by RecBole's own data loaders, trainer and evaluator.
"""

__all__: list[str] = []
