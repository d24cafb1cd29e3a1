"""Real-data explanation metrics for benchmarks/explain_quality.py: coverage, deletion fidelity
and agreement of the relation an explanation names, over users' top-10 lists.

* **Coverage**: the share of top-10 recommendations whose named relation has a KG path from
  the item to the user's history (history = every known interaction, as the CLI explains).
* **Deletion fidelity** (item side). KTUP reads the KG through the item's entity embedding
  ``e[a(i)]``, which TransH fitted to the item's facts. Deleting evidence therefore means
  re-fitting that embedding without it: starting from the trained ``e[a(i)]`` with everything
  else frozen, ``steps`` Adam steps minimise the TransH distance of the item's training facts
  (the item at its own end of each triple), once with all facts ("full"), once without the
  named relation's facts ("cited"), once without exactly as many random facts of other
  relations ("random"; pairs whose item has fewer such facts are left out of that comparison
  and counted, ``deletion_pairs_size_matched``). The pair's score under each re-fitted embedding gives the drops
  ``score(full) − score(cited)`` and ``score(full) − score(random)``. The refit is
  deterministic and shared by every user (it depends on the item and the removed facts only).
* **Agreement**: the same refit without each of the item's relations in turn; the named
  relation agrees when its removal hurts the pair's score most. Chance is 1/(relations the
  item has facts of); anchors: the model's own top preference, the KG-support argmax, a
  random relation.

History-side deletion (removing the cited history items and re-fitting the user row) is in
``explain_deletion_history.py``.
"""

from __future__ import annotations

import numpy as np
import torch

from ktup.explain.evidence import EvidenceIndex, RelationSupport, expand_csr
from ktup.explain.latent import choose_relations
from ktup.models import functional as fn


def named_relations(model, rec, users: np.ndarray, items: np.ndarray, batch: int = 4096):
    """Per pair: (model's own top relation, named relation (the recommender's evidence step, as
    explanations run it), KG support (B, R), the kg-support rule's relation)."""
    rs = RelationSupport(rec.evidence, rec._seen_indptr, rec._seen_items)
    rel_of = np.asarray(model.preference_relation, dtype=np.int64)
    f = rec.evidence._by_item
    has_r = np.zeros((rec.dataset.n_items, rec.evidence.n_relations), dtype=bool)
    has_r[f[:, 0], f[:, 1]] = True
    tops, named, sups, ks = [], [], [], []
    with torch.no_grad():
        for s in range(0, len(users), batch):
            ub, ib = users[s:s + batch], items[s:s + batch]
            logp = torch.log_softmax(model.preference_logits(torch.as_tensor(ub), torch.as_tensor(ib)).double(), 1).numpy()
            sup_r = rs.support(ub, ib)                                   # (B, R) by relation id
            sup, has = sup_r[:, rel_of], has_r[ib][:, rel_of]
            post = rec.latent.posterior(ub, ib)[:, rel_of] if rec.evidence_step == "latent-class" else None
            tops.append(rel_of[logp.argmax(1)])
            named.append(rel_of[choose_relations(logp, sup, has, post)[0]])
            ks.append(rel_of[choose_relations(logp, sup, has)[0]])
            sups.append(sup_r)
    return np.concatenate(tops), np.concatenate(named), np.concatenate(sups), np.concatenate(ks)


def _item_triples(kg: np.ndarray, item_entity: np.ndarray, items: np.ndarray):
    """CSR over ``items``: training triples where the item's entity is the head or the tail,
    with the side (0: head, 1: tail). Self-loops count once (as head)."""
    ents = item_entity[items]
    E = int(max(kg[:, [0, 2]].max(), ents.max())) + 1
    ends = np.concatenate([np.stack([kg[:, 0], np.arange(len(kg)), np.zeros(len(kg), np.int64)], 1),
                           np.stack([kg[:, 2], np.arange(len(kg)), np.ones(len(kg), np.int64)], 1)])
    ends = ends[~((ends[:, 2] == 1) & (kg[ends[:, 1], 0] == kg[ends[:, 1], 2]))]
    ends = ends[np.argsort(ends[:, 0], kind="stable")]
    ptr = np.zeros(E + 1, dtype=np.int64)
    np.cumsum(np.bincount(ends[:, 0], minlength=E), out=ptr[1:])
    okidx = np.flatnonzero(ents >= 0)
    own, pos = expand_csr(ptr, ents[okidx])                             # owner sorted ascending
    rows = ends[pos]
    cnt = np.zeros(len(items), dtype=np.int64)
    cnt[okidx] = ptr[ents[okidx] + 1] - ptr[ents[okidx]]
    return okidx[own], rows[:, 1], rows[:, 2], cnt


@torch.no_grad()
def _refit(model, ent: np.ndarray, tri: np.ndarray, side: np.ndarray, mask: np.ndarray, kg: np.ndarray,
           steps: int, lr: float, chunk: int = 2048) -> torch.Tensor:
    """Re-fitted entity rows (V, d): start at ``entity[ent]``, minimise the kept facts' TransH
    distances (``mask`` (V, F) over the padded facts ``tri``/``side`` (V, F), −1 = padding)."""
    out = []
    E = model.entity.weight
    for s in range(0, len(ent), chunk):
        sl = slice(s, s + chunk)
        t = torch.as_tensor(tri[sl])
        valid = torch.as_tensor(mask[sl]) & (t >= 0)
        tt = t.clamp_min(0)
        trip = torch.as_tensor(kg)[tt]                                   # (v, F, 3)
        sd = torch.as_tensor(side[sl]).clamp_min(0)
        other = torch.where(sd == 0, trip[..., 2], trip[..., 0])
        o = E[other]
        r = model.relation.weight[trip[..., 1]]
        w = fn.normal(model.relation_norm.weight[trip[..., 1]], model.unit_normals)
        x = E[torch.as_tensor(ent[sl])].clone()
        m, v = torch.zeros_like(x), torch.zeros_like(x)
        head = (sd == 0)[..., None]
        vf = valid.to(x.dtype)
        for step in range(1, steps + 1):
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True)
                xe = xg[:, None, :].expand_as(o)
                h = torch.where(head, xe, o)
                tl = torch.where(head, o, xe)
                dist = fn.distance(fn.project(h, w) + r - fn.project(tl, w), model.norm)   # (v, F)
                loss = (dist * vf).sum()
                g, = torch.autograd.grad(loss, xg)
            m.mul_(0.9).add_(g, alpha=0.1)
            v.mul_(0.999).addcmul_(g, g, value=0.001)
            x -= lr * (m / (1 - 0.9 ** step)) / ((v / (1 - 0.999 ** step)).sqrt() + 1e-8)
            if model.max_norm > 0:
                x *= (model.max_norm / x.norm(dim=1, keepdim=True).clamp_min(1e-12)).clamp_max(1.0)
        out.append(x)
    return torch.cat(out) if out else E.new_zeros((0, E.shape[1]))


def deletion_metrics(model, d, users: np.ndarray, items: np.ndarray, named: np.ndarray, top: np.ndarray,
                     support: np.ndarray, steps: int = 30, lr: float = 0.01, seed: int = 0,
                     others: dict | None = None) -> dict:
    """Deletion fidelity and agreement (module docstring) for pairs (users, items) whose item is linked."""
    rng = np.random.default_rng(seed)
    others = {k: np.asarray(v)[d.item_entity[items] >= 0] for k, v in (others or {}).items()}
    kg = d.kg_train
    R = d.n_relations
    linked = d.item_entity[items] >= 0
    users, items, named, top, support = users[linked], items[linked], named[linked], top[linked], support[linked]
    uniq = np.unique(items)
    own, tri, side, cnt = _item_triples(kg, d.item_entity, uniq)
    F = int(cnt.max()) if len(cnt) else 0
    slot = np.arange(len(own)) - (np.cumsum(cnt) - cnt)[own]
    T = np.full((len(uniq), F), -1, dtype=np.int64)
    S = np.full((len(uniq), F), -1, dtype=np.int64)
    T[own, slot], S[own, slot] = tri, side
    rel = np.where(T >= 0, kg[np.maximum(T, 0), 1], -1)                   # (n_items, F)
    # variants per item: full, then for each relation r: without r ("cited" when r is named),
    # and without as many random facts of other relations ("random")
    has = np.zeros((len(uniq), R), dtype=bool)
    has[own, kg[tri, 1]] = True
    vi, vr = np.nonzero(has)                                              # (item idx, relation) combos
    n_r = (rel[vi] == vr[:, None]).sum(1)
    mask_full = T >= 0
    mask_cut = mask_full[vi] & (rel[vi] != vr[:, None])
    # random facts of other relations, exactly as many as the relation has (the equal-size
    # control; combos whose item has fewer facts of other relations are left out of it)
    keys = rng.random((len(vi), F))
    keys[~mask_cut] = np.inf
    rank = np.argsort(np.argsort(keys, axis=1), axis=1)
    mask_rand = mask_full[vi] & ~(rank < n_r[:, None])
    matched = mask_cut.sum(1) >= n_r
    ent = d.item_entity[uniq]
    V = len(uniq)
    X = _refit(model, np.concatenate([ent, ent[vi], ent[vi]]),
               np.concatenate([T, T[vi], T[vi]]), np.concatenate([S, S[vi], S[vi]]),
               np.concatenate([mask_full, mask_cut, mask_rand]), kg, steps, lr)
    X_full, X_cut, X_rand = X[:V], X[V:V + len(vi)], X[V + len(vi):]
    # scores of each pair under each variant
    pos_item = np.searchsorted(uniq, items)
    combo = np.full((len(uniq), R), -1, dtype=np.int64)
    combo[vi, vr] = np.arange(len(vi))

    def scores(Xrows: torch.Tensor, pair_idx: np.ndarray, item_rows: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            u = model.user.weight[torch.as_tensor(users[pair_idx])]
            iv = model.item.weight[torch.as_tensor(items[pair_idx])] + Xrows[torch.as_tensor(item_rows)]
            s = -model._pair_vec(u, iv, noisy=False)[3] + model._item_bias(torch.as_tensor(items[pair_idx]))
        return s.double().numpy()

    P = np.arange(len(users))
    s_full = scores(X_full, P, pos_item)
    c_named = combo[pos_item, named]
    ok = c_named >= 0                                                     # the named relation has training facts
    s_cut = scores(X_cut, P[ok], c_named[ok])
    s_rand = scores(X_rand, P[ok], c_named[ok])
    drop_cited = s_full[ok] - s_cut
    drop_rand = s_full[ok] - s_rand
    mt = matched[c_named[ok]]                                             # pairs with an equal-size control
    # agreement: every relation's removal, per pair
    pi, rr = np.nonzero(combo[pos_item] >= 0)
    s_each = scores(X_cut, pi, combo[pos_item[pi], rr])
    drops = np.full((len(users), R), -np.inf)
    drops[pi, rr] = s_full[pi] - s_each
    worst = drops.argmax(1)
    n_rel = (combo[pos_item] >= 0).sum(1)
    rnd = np.array([rng.choice(np.flatnonzero(combo[pos_item[p]] >= 0)) for p in range(len(users))]) \
        if len(users) else np.zeros(0, np.int64)
    sup_arg = support.argmax(1)

    def agree(x):
        return float((x == worst).mean()) if len(x) else None

    return {
        "pairs_linked": int(len(users)),
        "pairs_named_relation_has_training_facts": int(ok.sum()),
        "refit": {"steps": steps, "lr": lr, "facts": "kg_train, item's entity at either end"},
        "deletion_cited_drop_fraction": float((drop_cited > 0).mean()) if ok.any() else None,
        "deletion_random_drop_fraction_unmatched_sizes": float((drop_rand > 0).mean()) if ok.any() else None,
        "deletion_pairs_size_matched": int(mt.sum()),
        "deletion_cited_drop_fraction_matched": float((drop_cited[mt] > 0).mean()) if mt.any() else None,
        "deletion_random_drop_fraction": float((drop_rand[mt] > 0).mean()) if mt.any() else None,
        "deletion_cited_mean_drop_matched": float(drop_cited[mt].mean()) if mt.any() else None,
        "deletion_random_mean_drop_matched": float(drop_rand[mt].mean()) if mt.any() else None,
        "deletion_cited_beats_random_fraction_matched": float((drop_cited[mt] > drop_rand[mt]).mean()) if mt.any() else None,
        "mean_facts_removed_matched": float(n_r[c_named[ok]][mt].mean()) if mt.any() else None,
        "deletion_cited_mean_drop": float(drop_cited.mean()) if ok.any() else None,
        "deletion_random_mean_drop_unmatched_sizes": float(drop_rand.mean()) if ok.any() else None,
        "deletion_cited_median_drop": float(np.median(drop_cited)) if ok.any() else None,
        "deletion_random_median_drop": float(np.median(drop_rand)) if ok.any() else None,
        "deletion_cited_beats_random_fraction": float((drop_cited > drop_rand).mean()) if ok.any() else None,
        "mean_facts_removed": float(n_r[c_named[ok]].mean()) if ok.any() else None,
        "mean_random_facts_removed": float((mask_full[vi] & ~mask_rand).sum(1)[c_named[ok]].mean()) if ok.any() else None,
        "agreement_named": agree(named),
        "agreement_model_top": agree(top),
        "agreement_kg_support_argmax": agree(sup_arg),
        "agreement_random_relation": agree(rnd),
        "agreement_chance": float((1.0 / np.maximum(n_rel, 1)).mean()) if len(users) else None,
        **{f"agreement_{k}": agree(v) for k, v in others.items()},
    }


def coverage_metrics(rec, users: np.ndarray, items: np.ndarray, named: np.ndarray, top: np.ndarray,
                     support: np.ndarray, seed: int = 0) -> dict:
    """Share of pairs whose relation has a KG path to the history, for the named relation and anchors."""
    rng = np.random.default_rng(seed)
    R = rec.dataset.n_relations
    idx: EvidenceIndex = rec.evidence

    def cov(rel):
        return float(idx.paths_exist(users, items, rel, rec._seen_indptr, rec._seen_items).mean()) if len(users) else None

    return {
        "coverage_named": cov(named),
        "coverage_model_top": cov(top),
        "coverage_random_relation": cov(rng.integers(0, R, size=len(users))),
        "coverage_any_relation": float((support > 0).any(1).mean()) if len(users) else None,
        "pairs": int(len(users)),
    }
