"""Build and word one explanation: preference weights, KG evidence and strength.

KTUP binds each induced preference to a KG relation, so the preference with the largest logit
names *why* (the relation) and the KG says *what* (the entities the item reaches through it,
shared with items the user already has). ``score_pairs_per_preference`` says *how strongly*:
the pair's score had each preference been the induced one; the margin between the chosen
preference and the runner-up separates a clear reason from a toss-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np
import torch

from ktup.data.dataset import UNLINKED
from ktup.explain.names import relation_name

if TYPE_CHECKING:
    from ktup.explain.recommender import Recommender

MAX_ENTITIES = 5        # entities listed per explanation
MAX_HISTORY_ITEMS = 5   # history items listed per entity
MAX_EXAMPLES = 3        # other items named to describe an entity that has no name


def _item_ref(rec: "Recommender", i: int) -> dict:
    return {"item": rec.dataset.items.token(i), "title": rec.dataset.item_title(i)}


def _label(rec: "Recommender", i: int) -> str:
    t = rec.dataset.item_title(i)
    return t if t else f"item {rec.dataset.items.token(i)}"


def _entity_label(rec: "Recommender", e: int) -> str:
    """Entity name when the dataset has one; else the title of an item linked to it; else its id."""
    d = rec.dataset
    if d.entity_names is not None and d.entity_names[e]:
        return str(d.entity_names[e])
    linked = rec.evidence.items_of_entity(e)
    if linked.shape[0]:
        return f"{_label(rec, int(linked[0]))} ({d.entities.token(e)})"
    return d.entities.token(e)


def _strength(probs: np.ndarray, top: int, runner: Optional[int]) -> str:
    """How decisively the preference was induced: the top weight against the runner-up's."""
    if runner is None:
        return "only preference"
    ratio = probs[top] / max(probs[runner], 1e-12)
    if probs[top] >= 0.5 and ratio >= 2.0:
        return "strong"
    if ratio >= 1.5:
        return "moderate"
    return "weak"


@torch.no_grad()
def build_explanation(rec: "Recommender", u: int, i: int) -> dict:
    """The explanation of (internal user ``u``, internal item ``i``) as plain data, with ``text``."""
    model, d = rec.model, rec.dataset
    ut = torch.tensor([u], dtype=torch.long, device=rec.device)
    it = torch.tensor([i], dtype=torch.long, device=rec.device)
    logits = model.preference_logits(ut, it)[0].double().cpu().numpy()            # (K,)
    per_pref = model.score_pairs_per_preference(ut, it)[0].double().cpu().numpy()  # (K,)
    score = float(model.score_pairs(ut, it)[0])
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    relations = getattr(model, "preference_relation", None)
    induction = str(getattr(model, "induction", None) or _config_induction(rec) or "soft")

    order = np.argsort(-logits, kind="stable")
    prefs = []
    for k in order.tolist():
        r = None if relations is None else int(relations[k])
        prefs.append({
            "preference": k,
            "relation": None if r is None else d.relations.token(r),
            "relation_name": f"preference {k}" if r is None else relation_name(d.relations.token(r)),
            "weight": float(probs[k]),
            "logit": float(logits[k]),
            "score": float(per_pref[k]),
        })
    top = prefs[0]
    runner = prefs[1] if len(prefs) > 1 else None
    margin = None if runner is None else top["score"] - runner["score"]
    strength = {
        "score": top["score"],
        "runner_up": None if runner is None else runner["relation_name"],
        "runner_up_relation": None if runner is None else runner["relation"],
        "runner_up_score": None if runner is None else runner["score"],
        "margin": margin,
        "weight_margin": None if runner is None else top["weight"] - runner["weight"],
        "label": _strength(probs, int(order[0]), None if runner is None else int(order[1])),
    }
    out = {
        "user": d.users.token(u),
        "item": d.items.token(i),
        "title": d.item_title(i),
        "model": rec.model_name,
        "induction": induction,
        "scoring": str(getattr(model, "scoring", induction)),
        "score": score,
        "top": top,
        "preferences": prefs,
        "strength": strength,
        "evidence": None if relations is None else _evidence(rec, u, i, int(relations[int(order[0])])),
        "history_verb": "which you watched" if _is_movies(d.name) else "from your history",
    }
    out["text"] = format_explanation(out)
    return out


def _is_movies(name: str) -> bool:
    n = str(name).lower()
    return n.startswith("ml-") or "movie" in n or "film" in n


def _config_induction(rec: "Recommender") -> Optional[str]:
    run = getattr(rec, "run", None)
    try:
        return run.config.model.induction if run is not None else None
    except AttributeError:
        return None


def _evidence(rec: "Recommender", u: int, i: int, r: int) -> dict:
    d = rec.dataset
    e = int(d.item_entity[i])
    ev = {
        "relation": d.relations.token(r),
        "relation_name": relation_name(d.relations.token(r)),
        "item_entity": None if e == UNLINKED else d.entities.token(e),
        "paths_found": False,
        "n_entities": 0,
        "entities": [],
        "direct_history": [],
    }
    if e == UNLINKED:
        ev["note"] = "the item has no KG entity, so the KG offers no evidence; the reason rests on the learned preference alone"
        return ev
    hist = rec.history(u)
    hist = hist[hist != i]
    shared = rec.evidence.shared(i, r, hist)
    ex_owner, ex_items = rec.evidence.items_reaching(r, np.array([s.entity for s in shared[:MAX_ENTITIES]], dtype=np.int64))
    nbs = np.array([s.entity for s in shared], dtype=np.int64)
    direct = rec.evidence.linked_history(nbs, hist, exclude=i) if nbs.shape[0] else np.zeros(0, dtype=np.int64)
    ev["n_entities"] = len(shared)
    ev["entities"] = [
        {
            "entity": d.entities.token(s.entity),
            "name": _entity_label(rec, s.entity),
            "n_items": s.n_items,
            "n_history": int(s.history_items.shape[0]),
            "history_items": [_item_ref(rec, int(h)) for h in s.history_items[:MAX_HISTORY_ITEMS]],
            # other items reaching the entity: describe a nameless entity (a Freebase mid) by them
            "examples": [_item_ref(rec, int(o)) for o in ex_items[(ex_owner == j) & (ex_items != i)][:MAX_EXAMPLES]],
        }
        for j, s in enumerate(shared[:MAX_ENTITIES])
    ]
    ev["direct_history"] = [_item_ref(rec, int(h)) for h in direct[:MAX_HISTORY_ITEMS]]
    ev["paths_found"] = bool(direct.shape[0] or any(s.history_items.shape[0] for s in shared))
    if not shared:
        ev["note"] = f"the KG holds no {ev['relation_name']} fact about this item; the reason rests on the relation alone"
    elif not ev["paths_found"]:
        ev["note"] = f"no item in the user's history shares its {ev['relation_name']}; the reason rests on the relation alone"
    return ev


def _described(ent: dict) -> str:
    """An entity's label, with a few items sharing it when the label is only an id."""
    if ent["name"] != ent["entity"] or not ent.get("examples"):
        return ent["name"]
    return f"{ent['name']} (as in {', '.join(r['title'] or 'item ' + r['item'] for r in ent['examples'])})"


def _titles(refs: list[dict], total: int) -> str:
    names = [r["title"] or f"item {r['item']}" for r in refs]
    more = total - len(names)
    if more > 0:
        names.append(f"{more} more")
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def _rel_label(p: dict, clash: bool) -> str:
    """Relation name, with the token when two preferences' names read the same."""
    return f"{p['relation_name']} ({p['relation']})" if clash and p["relation"] else p["relation_name"]


def format_explanation(x: dict) -> str:
    """A few readable lines: the reason, its strength, and the KG evidence (or its absence)."""
    top, st, prefs = x["top"], x["strength"], x["preferences"]
    verb = x.get("history_verb", "from your history")
    what = f"{x['title']} (item {x['item']})" if x["title"] else f"item {x['item']}"
    rel = top["relation_name"]
    lines = [f"{what} for user {x['user']}: score {x['score']:.4f}"]
    reason = f"Recommended for its {rel}" if top["relation"] is not None else f"Induced {rel}"
    how = f"{x['induction']} induction"
    if x.get("scoring", x["induction"]) != x["induction"]:
        how += f", {x['scoring']} score"
    reason += f" (weight {top['weight']:.2f}, {how}"
    if top["relation"] is not None:
        reason += f", relation {top['relation']}"
    lines.append(reason + ").")
    if len(prefs) > 1:
        ru = prefs[1]
        clash = ru["relation_name"] == rel
        line = (f"Strength: {st['label']} — score {st['score']:.4f} under {_rel_label(top, clash)} vs "
                f"{st['runner_up_score']:.4f} under the runner-up {_rel_label(ru, clash)} (weight {ru['weight']:.2f}); "
                f"margin {st['margin']:+.4f}")
        if st["margin"] < 0:
            line += f", so {ru['relation_name']} alone would score it higher"
        lines.append(line + ".")
    ev = x.get("evidence")
    if ev is None:
        lines.append("This model's preferences are latent (not bound to KG relations): no KG evidence.")
        return "\n".join(lines)
    for ent in ev["entities"][:3]:
        if ent["n_history"]:
            lines.append(
                f"Evidence ({rel}): {ent['name']} — also linked to {_titles(ent['history_items'], ent['n_history'])}, "
                f"{verb} ({ent['n_items']} items in all)."
            )
    if ev["direct_history"]:
        lines.append(f"Evidence ({rel}): linked directly to {_titles(ev['direct_history'], len(ev['direct_history']))}, {verb}.")
    if not ev["paths_found"]:
        note = ev["note"][0].upper() + ev["note"][1:] + "."
        if ev["entities"]:
            names = ", ".join(_described(e) for e in ev["entities"][:3])
            more = ev["n_entities"] - min(3, len(ev["entities"]))
            note = f"Its {rel}: {names}{f' and {more} more' if more > 0 else ''}. " + note
        lines.append(note)
    return "\n".join(lines)
