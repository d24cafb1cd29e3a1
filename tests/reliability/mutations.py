"""Random damage to small valid dataset files, for the fuzz test and the battery.

A mutation is ``(kind, file, position, payload)``; :func:`apply` turns a valid dataset (from
:mod:`reliability.corpus`) into a damaged one. The readers may either load the result or raise
a one-line :class:`~ktup.errors.DataError`/:class:`~ktup.errors.KtupError`; anything else
(a crash, a traceback-worthy exception, a multi-line message) is a bug.
"""

from __future__ import annotations

import random
from typing import Optional

KINDS = ("delete", "duplicate", "insert", "swap-columns", "truncate", "replace-file", "drop-line", "dup-line")
INSERTS = [b"\t", b" ", b"\n", b"\r", b"\r\n", b"\x00", b"\xff", b"\xc3", b"nan", b"-1", b"1e999", b":", b"\"",
           b"#", b"\xef\xbb\xbf", b"\t\t", b"abc", b"0"]


def apply(files: dict[str, bytes], kind: str, target: int, pos: float, payload: bytes, count: int = 1) -> dict[str, bytes]:
    """Damage one file of ``files`` (chosen by ``target``, position ``pos`` in [0, 1))."""
    names = sorted(files)
    name = names[target % len(names)]
    data = files[name]
    i = int(pos * len(data)) if data else 0
    if kind == "delete":
        data = data[:i] + data[i + count:]
    elif kind == "duplicate":
        data = data[:i] + data[i:i + count] * 2 + data[i + count:]
    elif kind == "insert":
        data = data[:i] + payload + data[i:]
    elif kind == "truncate":
        data = data[:i]
    elif kind == "replace-file":
        data = payload
    elif kind in ("swap-columns", "drop-line", "dup-line"):
        lines = data.split(b"\n")
        k = int(pos * len(lines)) % max(1, len(lines))
        if kind == "swap-columns":
            sep = b"\t" if b"\t" in lines[k] else b" "
            cols = lines[k].split(sep)
            if len(cols) >= 2:
                a, b = count % len(cols), (count + 1) % len(cols)
                cols[a], cols[b] = cols[b], cols[a]
            lines[k] = sep.join(cols)
        elif kind == "drop-line":
            del lines[k]
        else:
            lines.insert(k, lines[k])
        data = b"\n".join(lines)
    out = dict(files)
    out[name] = data
    return out


def random_mutation(rng: random.Random) -> tuple[str, int, float, bytes, int]:
    kind = rng.choice(KINDS)
    payload = rng.choice(INSERTS) if kind != "replace-file" else bytes(rng.randrange(256) for _ in range(rng.randrange(0, 64)))
    return kind, rng.randrange(16), rng.random(), payload, rng.randrange(1, 8)


def outcome(load) -> tuple[str, Optional[str]]:
    """Run ``load()``: ``("loaded", None)``, ``("data-error", msg)``, ``("error", msg)`` or ``("CRASH", repr)``."""
    from ktup.errors import DataError, KtupError

    try:
        ds = load()
        if ds is not None:
            check_consistent(ds)
        return "loaded", None
    except AssertionError as e:
        return "CRASH", f"inconsistent dataset: {e}"
    except DataError as e:
        return ("data-error" if "\n" not in str(e) else "CRASH"), str(e)
    except KtupError as e:
        return ("error" if "\n" not in str(e) else "CRASH"), str(e)
    except Exception as e:  # noqa: BLE001 - the point: nothing else may escape
        return "CRASH", f"{type(e).__name__}: {e}"


def check_consistent(ds) -> None:
    """A loaded dataset's arrays index its id maps (what every later stage relies on)."""
    import numpy as np

    nu, ni, ne, nr = len(ds.users), len(ds.items), len(ds.entities), len(ds.relations)
    assert ds.n_users == nu and ds.n_items == ni
    for part in (ds.train, ds.valid, ds.test):
        assert part.users.dtype == np.int64 and part.items.dtype == np.int64
        assert ((part.users >= 0) & (part.users < nu)).all(), "user id out of range"
        assert ((part.items >= 0) & (part.items < ni)).all(), "item id out of range"
    for kg in (ds.kg_train, ds.kg_valid, ds.kg_test):
        kg = np.asarray(kg).reshape(-1, 3)
        assert ((kg[:, [0, 2]] >= 0) & (kg[:, [0, 2]] < ne)).all(), "entity id out of range"
        assert ((kg[:, 1] >= 0) & (kg[:, 1] < nr)).all(), "relation id out of range"
    ie = np.asarray(ds.item_entity)
    assert ie.shape == (ni,) and ((ie == -1) | ((ie >= 0) & (ie < ne))).all(), "item_entity out of range"
    assert len(ds.train) > 0 or len(ds.valid) + len(ds.test) > 0, "no interactions at all"
