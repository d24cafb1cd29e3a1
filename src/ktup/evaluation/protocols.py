"""Named evaluation protocols (docs/PROTOCOLS.md).

Numbers are only comparable under the same protocol, so every result carries the protocol's
name and parameters. A protocol fixes how the data is prepared (the ``DataConfig`` overrides it
implies), what is masked at ranking time and which metrics it reports; the ranking code itself
is shared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from ktup.errors import KtupError
from ktup.registry import PROTOCOLS as _PROTOCOL_REGISTRY


@dataclass(frozen=True)
class Protocol:
    name: str
    description: str
    data_overrides: dict[str, Any]          # DataConfig fields this protocol implies
    metrics: tuple[str, ...]                # metrics the protocol reports (others are extra)
    ks: tuple[int, ...] = (10,)
    masking: str = "valid: train items; test: train + valid items (scores set to -inf)"
    ranking: str = "full ranking over all items"
    notes: str = ""
    also_accepts: dict[str, tuple] = field(default_factory=dict)  # other values that implement the same setting
    split_phrase: str = ""                  # the words of ``description`` that name the protocol's split

    def parameters(self, split_used: Optional[str] = None) -> dict[str, Any]:
        """Plain data printed and stored with every result. ``split_used`` (see :func:`describe_split`)
        replaces the protocol's own split in the description: a result says the split it was made on."""
        desc = self.description
        if split_used and self.split_phrase in desc:
            desc = desc.replace(self.split_phrase, f"split: {split_used}")
        return {
            "name": self.name,
            "description": desc,
            **({"split_used": split_used} if split_used else {}),
            "data": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.data_overrides.items()},
            "ranking": self.ranking,
            "masking": self.masking,
            "metrics": list(self.metrics),
            "ks": list(self.ks),
            **({"notes": self.notes} if self.notes else {}),
        }

    def apply(self, data_cfg) -> Any:
        """Set this protocol's data settings on a :class:`ktup.config.DataConfig` (in place)."""
        for key, value in self.data_overrides.items():
            setattr(data_cfg, key, value)
        return data_cfg

    def mismatches(self, data_cfg) -> list[str]:
        """Data settings of ``data_cfg`` that differ from what this protocol implies."""
        out = []
        for key, want in self.data_overrides.items():
            have = getattr(data_cfg, key, None)
            if have in self.also_accepts.get(key, ()):
                continue
            if isinstance(want, tuple):
                ok = have is not None and len(tuple(have)) == len(want) and all(abs(float(a) - float(b)) < 1e-9 for a, b in zip(have, want))
            else:
                ok = have == want
            if not ok:
                out.append(f"data.{key}={have!r} (protocol {self.name}: {want!r})")
        return out


RECBOLE = Protocol(
    name="recbole",
    description="RecBole's benchmark: implicit feedback, random 8:1:1 split per user, full ranking",
    data_overrides={"split": "random", "split_ratios": (0.8, 0.1, 0.1), "drop_unlinked": True,
                    "k_core": 0, "rating_threshold": None},
    metrics=("recall", "ndcg", "mrr", "hit", "precision", "map"),
    also_accepts={"split": ("ratio_per_user", "given")},   # "given": RecBole's own split files
    split_phrase="random 8:1:1 split per user",
    notes="metrics averaged over users with >= 1 held-out item; map as RecBole defines it",
)

PAPER = Protocol(
    name="paper",
    description="KTUP authors' protocol: per-user shuffle split 70/10/20 after a 5-core filter, full ranking",
    data_overrides={"split": "random", "split_ratios": (0.7, 0.1, 0.2), "drop_unlinked": True,
                    "k_core": 5, "rating_threshold": None},
    metrics=("precision", "recall", "f1", "hit", "ndcg", "ndcg_ktup"),
    also_accepts={"split": ("ratio_per_user", "given")},
    split_phrase="per-user shuffle split 70/10/20",
    notes="k-core 5 here (the authors filtered at 5 or 10 depending on the dataset: set data.k_core); "
          "ndcg is the standard one (ideal of the gold set); ndcg_ktup is the authors' variant "
          "(DCG over the DCG of the same hits sorted to the top) and is not comparable to ndcg",
)

#: name → Protocol: the registry of :mod:`ktup.registry` (its entries point at the constants above).
PROTOCOLS = _PROTOCOL_REGISTRY


def describe_split(meta: Optional[dict[str, Any]]) -> Optional[str]:
    """The split a data set was actually given (``dataset.meta["split"]``) in words, or None."""
    if not isinstance(meta, dict) or not meta.get("method"):
        return None
    method, ratios, seed = meta["method"], meta.get("ratios"), meta.get("seed")
    if method == "given":
        return "the data set's own train/valid/test files (given)"
    if method == "loo":
        return "leave-one-out per user" + (f" (seed {seed})" if seed is not None else "")
    parts = ""
    if ratios:
        r = [float(x) for x in ratios]
        small = min((x for x in r if x > 0), default=1.0)
        parts = ":".join(f"{x / small:g}" for x in r) + " "
    if method == "temporal":
        return f"temporal {parts}split per user (earliest first)"
    if method in ("random", "ratio_per_user"):
        return f"random {parts}split per user" + (f" (seed {seed})" if seed is not None else "")
    return None   # not known (e.g. a split read back from a run without its description)


def get_protocol(name: str | Protocol) -> Protocol:
    if isinstance(name, Protocol):
        return name
    if str(name) not in PROTOCOLS:
        raise KtupError(f"unknown evaluation protocol {name!r} (known: {', '.join(PROTOCOLS)})")
    return PROTOCOLS[str(name)]
