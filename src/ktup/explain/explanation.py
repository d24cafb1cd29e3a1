"""Build and word one explanation: preference weights, KG evidence and strength.

KTUP binds each induced preference to a KG relation. ``top`` is the model's own induced
preference (largest logit) and is always reported as such. The relation the text *names*
(``named``) is chosen by a post-hoc evidence step (:func:`ktup.explain.latent.choose_relations`):
among the relations through which the item reaches the user's history in the KG, the one with
the largest latent-class posterior (``latent-class``, the default) or the largest
``log weight + log support`` (``kg-path``, with ``Recommender(evidence_step="kg-support")``);
without any such path, the model's top preference when the item has facts of it, else the
heaviest relation it has facts of. ``chosen_by`` says which rule applied. "Strength" reads the model's weights against the
uniform 1/K and the runner-up (see :func:`strength_label`). docs/EXPLANATIONS.md has the rules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np
import torch

from ktup.data.dataset import UNLINKED
from ktup.explain.influence import history_influence
from ktup.explain.latent import choose_relations
from ktup.explain.names import display_title, entity_display, relation_labels

if TYPE_CHECKING:
    from ktup.explain.recommender import Recommender

MAX_ENTITIES = 5        # entities listed per explanation
MAX_HISTORY_ITEMS = 5   # history items listed per entity
MAX_EXAMPLES = 3        # other items named to describe an entity that has no name
MAX_CITED = 5           # history items cited: those holding up the score most (influence)


def _title(rec: "Recommender", i: int) -> Optional[str]:
    return display_title(rec.dataset.item_title(i))


def _item_ref(rec: "Recommender", i: int) -> dict:
    return {"item": rec.dataset.items.token(i), "title": _title(rec, i)}


def _label(rec: "Recommender", i: int) -> str:
    t = _title(rec, i)
    return t if t else f"item {rec.dataset.items.token(i)}"


def _entity_label(rec: "Recommender", e: int) -> str:
    """Entity name when the dataset has one; else the title of an item linked to it; else a
    readable form of its token ("an entity" for a Freebase mid unless ``rec.show_ids``)."""
    d = rec.dataset
    ids = bool(getattr(rec, "show_ids", False))
    tok = d.entities.token(e)
    if d.entity_names is not None and d.entity_names[e]:
        return str(d.entity_names[e])
    linked = rec.evidence.items_of_entity(e)
    if linked.shape[0]:
        return f"{_label(rec, int(linked[0]))} ({tok})" if ids else _label(rec, int(linked[0]))
    return entity_display(tok, ids=ids)


def labels_of(rec: "Recommender") -> list[str]:
    """Distinct readable names of the dataset's relations (cached on the recommender)."""
    cached = getattr(rec, "_relation_labels", None)
    if cached is None:
        d = rec.dataset
        src = (d.meta or {}).get("relation_names") if isinstance(getattr(d, "meta", None), dict) else None
        tokens = [(src[r] if src and r < len(src) and src[r] else d.relations.token(r)) for r in range(d.n_relations)]
        cached = relation_labels(tokens)
        try:
            rec._relation_labels = cached
        except AttributeError:
            pass
    return cached


#: Strength thresholds: the top weight's lift over uniform (w·K) and its ratio to the runner-up's.
STRONG = (4.0, 2.0)
MODERATE = (2.0, 1.5)


def strength_label(w_top: float, w_runner: Optional[float], k: int) -> str:
    """strong: the top weight is ≥ 4× uniform (1/K) and ≥ 2× the runner-up's; moderate: ≥ 2×
    uniform and ≥ 1.5× the runner-up's; weak otherwise ("only preference" when K = 1)."""
    if w_runner is None or k <= 1:
        return "only preference"
    # compared as printed (one decimal), so the label never disagrees with the numbers beside it
    lift, ratio = round(w_top * k, 1), round(w_top / max(w_runner, 1e-12), 1)
    if lift >= STRONG[0] and ratio >= STRONG[1]:
        return "strong"
    if lift >= MODERATE[0] and ratio >= MODERATE[1]:
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

    labels = None if relations is None else labels_of(rec)
    order = np.argsort(-logits, kind="stable")
    prefs = []
    for k in order.tolist():
        r = None if relations is None else int(relations[k])
        prefs.append({
            "preference": k,
            "relation": None if r is None else d.relations.token(r),
            "relation_name": f"preference {k}" if r is None else labels[r],
            "weight": float(probs[k]),
            "logit": float(logits[k]),
            "score": float(per_pref[k]),
        })
    top = prefs[0]
    runner = prefs[1] if len(prefs) > 1 else None
    K = len(prefs)
    margin = None if runner is None else top["score"] - runner["score"]
    strength = {
        "score": top["score"],
        "runner_up": None if runner is None else runner["relation_name"],
        "runner_up_relation": None if runner is None else runner["relation"],
        "runner_up_score": None if runner is None else runner["score"],
        "runner_up_weight": None if runner is None else runner["weight"],
        "margin": margin,
        "weight_margin": None if runner is None else top["weight"] - runner["weight"],
        "uniform": 1.0 / K,
        "lift": top["weight"] * K,
        "ratio_to_runner_up": None if runner is None else top["weight"] / max(runner["weight"], 1e-12),
        "label": strength_label(top["weight"], None if runner is None else runner["weight"], K),
    }
    hist = rec.history(u)
    seen = bool(np.isin(i, hist))
    named = None if relations is None else _named(rec, u, i, hist, prefs, [int(x) for x in relations])
    out = {
        "user": d.users.token(u),
        "item": d.items.token(i),
        "title": _title(rec, i),
        "model": rec.model_name,
        "induction": induction,
        "scoring": str(getattr(model, "scoring", induction)),
        "score": score,
        "seen": seen,
        "top": top,
        "named": named,
        "preferences": prefs,
        "strength": strength,
        "evidence": None if named is None else _evidence(rec, u, i, d.relations.index(named["relation"])),
        "history_verb": "which you watched" if _is_movies(d.name) else "from your history",
    }
    out["text"] = format_explanation(out)
    return out


def _named(rec: "Recommender", u: int, i: int, hist: np.ndarray, prefs: list[dict], relations: list[int]) -> dict:
    """The relation the explanation names (the evidence step, :func:`choose_relations`)."""
    idx = rec.evidence
    sup = idx.support(i, hist)                                    # (R,) by relation id
    rel = np.array([relations[p["preference"]] for p in prefs], dtype=np.int64)   # in prefs' order
    inside = rel < sup.shape[0]
    s = np.where(inside, sup[np.minimum(rel, sup.shape[0] - 1)], 0.0) if sup.shape[0] else np.zeros(len(prefs))
    w = np.array([p["weight"] for p in prefs])
    has = np.isin(rel, idx.relations_of(i))
    post = None
    if getattr(rec, "evidence_step", "latent-class") == "latent-class" and idx.n_relations:
        pr = rec.latent.posterior(np.array([u]), np.array([i]))[0]
        post = np.where(inside, pr[np.minimum(rel, pr.shape[0] - 1)], 0.0)
    k, rules = choose_relations(np.log(np.maximum(w, 1e-300))[None], s[None], has[None],
                                None if post is None else post[None])
    j, rule = int(k[0]), str(rules[0])
    p = prefs[j]
    return {**p, "rank": j + 1, "support": float(s[j]), "top_support": float(s[0]), "chosen_by": rule,
            "posterior": None if post is None else float(post[j]),
            "top_posterior": None if post is None else float(post[0]),
            "is_model_top": j == 0, "item_has_facts": bool(has[j])}


def _is_movies(name: str) -> bool:
    n = str(name).lower()
    return n.startswith(("ml-", "ml1m", "ml10m", "ml20m")) or "movie" in n or "film" in n


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
        "relation_name": labels_of(rec)[r],
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
    nbs = np.array([s.entity for s in shared], dtype=np.int64)
    direct = rec.evidence.linked_history(nbs, hist, exclude=i) if nbs.shape[0] else np.zeros(0, dtype=np.int64)
    found = bool(direct.shape[0] or any(s.history_items.shape[0] for s in shared))
    shared, direct = _by_influence(rec, u, i, shared, direct, ev)
    ex_owner, ex_items = rec.evidence.items_reaching(r, np.array([s.entity for s in shared[:MAX_ENTITIES]], dtype=np.int64))
    ev["n_entities"] = len(shared)
    ev["entities"] = [
        {
            "entity": d.entities.token(s.entity),
            "name": _entity_label(rec, s.entity),
            "n_items": s.n_items,
            "n_history": int(ev.get("_n_history", {}).get(s.entity, s.history_items.shape[0])),
            "history_items": [_item_ref(rec, int(h)) for h in s.history_items[:MAX_HISTORY_ITEMS]],
            # other items reaching the entity: describe a nameless entity (a Freebase mid) by them
            "examples": [_item_ref(rec, int(o)) for o in ex_items[(ex_owner == j) & (ex_items != i)][:MAX_EXAMPLES]],
        }
        for j, s in enumerate(shared[:MAX_ENTITIES])
    ]
    ev["direct_history"] = [_item_ref(rec, int(h)) for h in direct[:MAX_HISTORY_ITEMS]]
    ev.pop("_n_history", None)
    ev["paths_found"] = found
    if found and not (direct.shape[0] or any(s.history_items.shape[0] for s in shared)):
        ev["note"] = (f"{ev['n_history_lowering']} items in your history share a \"{ev['relation_name']}\" link with it, "
                      "but by the model's gradient none of them raises this score")
    if not shared:
        ev["note"] = (f"the KG holds no \"{ev['relation_name']}\" fact about this item (nor any fact linking it to "
                      "your history); the reason rests on the learned preference alone")
    elif not ev["paths_found"]:
        ev["note"] = (f"no item in your history shares a \"{ev['relation_name']}\" link with it; "
                      "the reason rests on the learned preference alone")
    return ev


def _by_influence(rec: "Recommender", u: int, i: int, shared: list, direct: np.ndarray, ev: dict):
    """Cite the history items on the KG paths that hold up the score most (influence,
    :mod:`ktup.explain.influence`): the ``MAX_CITED`` with the largest positive influence (all
    positive ones when ``rec.cite_top`` is None), each entity's list best first; entities keep the
    specificity order (rarest first) unless ``rec.entity_order == "influence"``. A model without a
    user table keeps the specificity order and every linked item."""
    from dataclasses import replace

    on_paths = np.unique(np.concatenate([s.history_items for s in shared] + [direct]))
    infl = history_influence(rec.model, u, i, on_paths)
    if infl is None:
        return shared, direct
    ev["cited_by"] = "influence"
    ev["n_history_lowering"] = int((infl <= 0).sum())
    top = getattr(rec, "cite_top", MAX_CITED)
    order = np.argsort(-infl, kind="stable")
    chosen = order[infl[order] > 0][:top] if top is not None else order[infl[order] > 0]
    cited = np.sort(on_paths[chosen])

    def keep(items: np.ndarray) -> tuple[np.ndarray, float]:
        items = items[np.isin(items, cited)]
        v = infl[np.searchsorted(on_paths, items)]
        o = np.argsort(-v, kind="stable")
        return items[o], float(v.max()) if v.shape[0] else -np.inf

    out = []
    for s in shared:
        items, best = keep(s.history_items)
        out.append((replace(s, history_items=items), best, s.history_items.shape[0]))
    if getattr(rec, "entity_order", "specificity") == "influence":
        out.sort(key=lambda t: (t[0].history_items.shape[0] == 0, -t[1], t[0].n_items, t[0].entity))
    else:
        out.sort(key=lambda t: (t[0].history_items.shape[0] == 0, t[0].n_items, -t[1], t[0].entity))
    ev["_n_history"] = {t[0].entity: t[2] for t in out}
    return [t[0] for t in out], keep(direct)[0]


def _described(ent: dict) -> str:
    """An entity's label, with a few items sharing it when the label alone says little."""
    if ent["name"] not in ("an entity", ent["entity"]) or not ent.get("examples"):
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


def _q(p: dict) -> str:
    return f"\"{p['relation_name']}\""


def format_explanation(x: dict) -> str:
    """A few readable lines: the item (and whether it is already seen), the named relation and
    how it was chosen, the strength in checkable terms, and the KG evidence (or its absence)."""
    top, st, prefs = x["top"], x["strength"], x["preferences"]
    named = x.get("named") or top
    verb = x.get("history_verb", "from your history")
    what = f"{x['title']} (item {x['item']})" if x["title"] else f"item {x['item']}"
    how = f"{x['induction']} induction"
    if x.get("scoring", x["induction"]) != x["induction"]:
        how += f", {x['scoring']} score"
    lines = [f"{what} for user {x['user']}: score {x['score']:.4f} ({how})"]
    if x.get("seen"):
        lines.append("You already have this item (it is in your history): this explains its score; "
                     "it would not be recommended to you.")
    K = len(prefs)
    if top["relation"] is None:
        lines.append(f"Induced {top['relation_name']} (weight {top['weight']:.2f} against uniform 1/{K} = {1 / K:.2f}); "
                     "this model's preferences are latent (not bound to KG relations): no KG evidence.")
    else:
        rule = named.get("chosen_by", "model")
        reason = f"Reason: {_q(named)} ({named['relation']}), model weight {named['weight']:.2f}"
        if rule == "kg-path" and named.get("is_model_top"):
            reason += "; it is the model's own top preference and links this item to your history in the KG."
        elif rule == "kg-path":
            reason += (f" (its rank {named['rank']} of {K}), named because it links this item to your history in the KG "
                       f"(weight × KG support is highest). The model's own top preference is {_q(top)} "
                       f"({top['relation']}, weight {top['weight']:.2f}), which "
                       + ("links it to nothing in your history." if named.get("top_support", 0) <= 0 else
                          "links it to your history less strongly."))
        elif rule == "latent-class":
            why = ("of the relations linking this item to your history in the KG, it best accounts for your "
                   f"history (posterior {named['posterior']:.2f} in a latent-class fit of your history over KG relations)")
            if named.get("is_model_top"):
                reason += f"; it is the model's own top preference and, {why}."
            else:
                reason += (f" (its rank {named['rank']} of {K}), named because, {why}. The model's own top preference is "
                           f"{_q(top)} ({top['relation']}, weight {top['weight']:.2f}), which "
                           + ("links it to nothing in your history." if named.get("top_support", 0) <= 0 else
                              f"links it to your history too but accounts for it less (posterior {named['top_posterior']:.2f})."))
        elif rule == "facts":
            reason += (f" (its rank {named['rank']} of {K}); the model's own top preference {_q(top)} "
                       f"(weight {top['weight']:.2f}) has no fact about this item, so the heaviest relation it has facts of is named.")
        else:
            reason += "; the model's own top preference."
        lines.append(reason)
    if len(prefs) > 1:
        lines.append(
            f"Strength: {st['label']} — the model's top weight {top['weight']:.2f} ({_q(top)}) is "
            f"{st['lift']:.1f}× uniform (1/{K} = {st['uniform']:.2f}) and {st['ratio_to_runner_up']:.1f}× the runner-up "
            f"{_q(prefs[1])} ({prefs[1]['weight']:.2f}); strong needs ≥ 4× uniform and ≥ 2× the runner-up, moderate ≥ 2× and ≥ 1.5×.")
    ev = x.get("evidence")
    if ev is None:
        return "\n".join(lines)
    rel = named["relation_name"]
    for ent in ev["entities"][:3]:
        if ent["history_items"]:
            lines.append(
                f"Evidence ({rel}): {ent['name']} — also linked to {_titles(ent['history_items'], ent['n_history'])}, "
                f"{verb} ({ent['n_items']} items in all)."
            )
    if ev["direct_history"]:
        lines.append(f"Evidence ({rel}): linked directly to {_titles(ev['direct_history'], len(ev['direct_history']))}, {verb}.")
    if ev.get("cited_by") == "influence" and (ev["direct_history"] or any(e["history_items"] for e in ev["entities"])):
        who = "items you watched" if verb == "which you watched" else "history items"
        lines.append(f"Shown: the linked {who} that hold up this score most (at most {MAX_CITED}, by the model's "
                     "gradient), best first; the others are counted, not named.")
    elif ev["paths_found"] and ev.get("note"):
        lines.append(ev["note"][0].upper() + ev["note"][1:] + ".")
    if not ev["paths_found"]:
        note = ev["note"][0].upper() + ev["note"][1:] + "."
        if ev["entities"]:
            names = ", ".join(_described(e) for e in ev["entities"][:3])
            more = ev["n_entities"] - min(3, len(ev["entities"]))
            note = f"Its {_q(named)} links: {names}{f' and {more} more' if more > 0 else ''}. " + note
        lines.append(note)
    return "\n".join(lines)
