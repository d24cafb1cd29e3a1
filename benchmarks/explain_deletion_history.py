"""History-side deletion fidelity for benchmarks/explain_quality.py: remove the history items an
explanation cites and re-fit the user; does the recommended item's score drop?

KTUP reads a user's history only through the user row ``u`` it trained on it. So deleting
history evidence means re-fitting that row without it. For each sampled (user, item) pair the
*cited* items are either the history items the explanation text shows (``cited_in_text``: at
most 3 entities × 5 items + 5 direct links) or every history item the named relation's KG
paths rest on (``cited_on_paths``, :meth:`EvidenceIndex.path_items`). Three re-fits of the user row, everything else frozen,
from the same neutral start (the mean user row), with seeded uniform negatives, ``steps``
Adam steps of the model's BPR loss on the user's training items:

* **full**: all training items;
* **cited**: without the cited items;
* **random**: without as many *uncited* training items, drawn at random (the equal-size
  control; a pair whose user has fewer uncited items than cited ones is left out and counted).

Drop = score(full) − score(variant). The refit of a user is shared by its pairs (full) and
vectorised over all variants of a chunk of users (flat entries, no loop per pair).
"""

from __future__ import annotations

import numpy as np
import torch

from ktup.explain.evidence import expand_csr
from ktup.models import functional as fn


def _scores(model, U: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Scores of user rows U (B, d) with items (B,) under the model's deterministic scoring.

    Squared-L2 KTUP with ``expected``/``hard`` scoring takes a closed form that needs no
    (B, K, d) temporaries: with x = u − ĩ, ``‖x − (x·w)w + p‖² = ‖x‖² + (x·w)²(‖w‖² − 2) + ‖p‖²
    + 2 x·p − 2 (x·w)(w·p)`` per preference (projection is linear); else the model's own path."""
    iv = model.item_vectors(items)
    if model.norm != "l2" or model.scoring not in ("expected", "hard"):
        return -model._pair_vec(U, iv, noisy=False)[3] + model._item_bias(items)
    P, W = model.preference_tables()
    w = fn.normal(W, model.unit_normals)
    x = U - iv
    xw, xp = x @ w.T, x @ P.T
    dist = ((x * x).sum(-1, keepdim=True) + xw.pow(2) * ((w * w).sum(-1) - 2) + (P * P).sum(-1)
            + 2 * xp - 2 * xw * (w * P).sum(-1))                                   # (B, K)
    logits = (U + iv) @ P.T
    if model.scoring == "expected":
        d = (torch.softmax(logits, -1) * dist).sum(-1)
    else:
        d = dist.gather(1, logits.argmax(-1, keepdim=True))[:, 0]
    return -d + model._item_bias(items)


def _refit_users(model, var_user: np.ndarray, ent_var: np.ndarray, ent_item: np.ndarray, ent_slot: np.ndarray,
                 n_items: int, hist_ptr: np.ndarray, hist_items: np.ndarray, steps: int, lr: float,
                 seed: int) -> torch.Tensor:
    """Re-fitted user rows (V, d): variant v trains on the entries ``ent_item[ent_var == v]``;
    ``ent_slot`` is each entry's position in the history CSR, so every variant of a user sees
    the same negative for the same history item at each step (variants differ only by the
    removed items)."""
    g = torch.Generator().manual_seed(seed)
    V = var_user.shape[0]
    start = model.user.weight.detach().mean(0)
    X = start.repeat(V, 1).clone().requires_grad_(True)
    opt = torch.optim.Adam([X], lr=lr)
    ev = torch.as_tensor(ent_var)
    pos = torch.as_tensor(ent_item)
    eu = var_user[ent_var]
    hist_key = np.repeat(np.arange(hist_ptr.shape[0] - 1), np.diff(hist_ptr)) * n_items + hist_items
    n_v = torch.bincount(ev, minlength=V).clamp_min(1).to(X.dtype)
    for _ in range(steps):
        # negatives: uniform over items outside the user's history, seeded
        table = torch.randint(0, n_items, (len(hist_items),), generator=g).numpy()
        neg = table[ent_slot]
        bad = np.isin(eu * n_items + neg, hist_key)
        neg[bad] = (neg[bad] + 1 + ent_slot[bad]) % n_items          # deterministic re-draw, same across variants
        opt.zero_grad()
        u = X[ev]
        diff = _scores(model, u, pos) - _scores(model, u, torch.as_tensor(neg))
        loss = (torch.nn.functional.softplus(-diff) / n_v[ev]).sum()
        loss.backward()
        opt.step()
        if model.max_norm > 0:
            with torch.no_grad():
                X *= (model.user_max_norm / X.norm(dim=1, keepdim=True).clamp_min(1e-12)).clamp_max(1.0)
    return X.detach()


def cited_on_paths(rec, users: np.ndarray, items: np.ndarray, named: np.ndarray):
    """Cited = every history item the named relation's KG paths rest on: (pair index, item)."""
    return rec.evidence.path_items(users, items, named, rec._seen_indptr, rec._seen_items)


def cited_in_text(rec, users: np.ndarray, items: np.ndarray):
    """Cited = the history items the explanation text shows (its evidence lines), per pair, with
    the relation it names: ((pair index, item), named relation ids). Builds each explanation."""
    pairs, cited, named = [], [], []
    ids = {t: j for j, t in enumerate(rec.dataset.items.tokens)}
    for p, (u, i) in enumerate(zip(users.tolist(), items.tolist())):
        x = rec._explain_ids(u, i)
        ev = x["evidence"] or {}
        shown = [h["item"] for e in ev.get("entities", [])[:3] for h in e["history_items"]]
        shown += [h["item"] for h in ev.get("direct_history", [])]
        for t in sorted({ids[t] for t in shown}):
            pairs.append(p)
            cited.append(t)
        named.append(rec.dataset.relations.index(x["named"]["relation"]))
    return (np.asarray(pairs, dtype=np.int64), np.asarray(cited, dtype=np.int64)), np.asarray(named, dtype=np.int64)


def cited_by_influence(model, rec, users: np.ndarray, items: np.ndarray, n_cite: np.ndarray,
                       among: tuple[np.ndarray, np.ndarray] | None = None):
    """Cited = the ``n_cite[p]`` training items with the largest first-order influence on the
    pair's score: ``∇_u s(u, i) · ∇_u s(u, j)`` at the trained user row (a gradient step on j
    moves u along ∇s(u, j); removing j undoes it). ``among``: restrict to these (pair, item)
    candidates (e.g. the named relation's KG-path items). Vectorised: one gradient per row."""
    ptr, hist = rec._seen_indptr, rec._seen_items
    if among is None:
        own, hpos = expand_csr(ptr, users)
        cp, ci = own, hist[hpos]
    else:
        cp, ci = among
    U = model.user.weight.detach()
    with torch.enable_grad():
        Ui = U[torch.as_tensor(users)].clone().requires_grad_(True)
        gi, = torch.autograd.grad(_scores(model, Ui, torch.as_tensor(items)).sum(), Ui)
        Uj = U[torch.as_tensor(users[cp])].clone().requires_grad_(True)
        gj, = torch.autograd.grad(_scores(model, Uj, torch.as_tensor(ci)).sum(), Uj)
    infl = (gi[torch.as_tensor(cp)] * gj).sum(1).double().numpy()
    order = np.lexsort((-infl, cp))
    cnt = np.bincount(cp, minlength=len(users))
    rank = np.empty(len(cp), dtype=np.int64)
    rank[order] = np.arange(len(cp)) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    keep = rank < n_cite[cp]
    return cp[keep], ci[keep]


def history_deletion(model, rec, users: np.ndarray, items: np.ndarray, pair: np.ndarray, cited: np.ndarray,
                     steps: int = 60, lr: float = 0.05, seed: int = 0, chunk_entries: int = 400_000) -> dict:
    """History-side deletion metrics (module docstring) for cited history items ``(pair, cited)``.
    ``rec``'s history must be the training interactions (``seen_splits=("train",)``)."""
    rng = np.random.default_rng(seed)
    ptr, hist = rec._seen_indptr, rec._seen_items
    I = rec.dataset.n_items
    n_cited = np.bincount(pair, minlength=len(users))
    n_hist = np.diff(ptr)[users]
    ok = (n_cited > 0) & (n_hist - n_cited >= n_cited)
    uu = np.unique(users[ok])
    pidx = np.flatnonzero(ok)
    own, hpos = expand_csr(ptr, users[pidx])                   # each pair's training items
    h_item = hist[hpos]
    is_cited = np.isin(pidx[own] * I + h_item, pair * I + cited)
    key = rng.random(len(own))
    key[is_cited] = np.inf                                     # random removal among uncited items only
    order = np.lexsort((key, own))
    cnt = np.bincount(own, minlength=len(pidx))
    rank = np.empty(len(own), dtype=np.int64)
    rank[order] = np.arange(len(own)) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    is_rand = rank < n_cited[pidx][own]
    # variants: full per user, then cited per pair, then random per pair
    fu_own, fu_pos = expand_csr(ptr, uu)
    var_user = np.concatenate([uu, users[pidx], users[pidx]])
    nU, nP = len(uu), len(pidx)
    ent_var = np.concatenate([fu_own, nU + own[~is_cited], nU + nP + own[~is_rand]])
    ent_item = np.concatenate([hist[fu_pos], h_item[~is_cited], h_item[~is_rand]])
    ent_slot = np.concatenate([fu_pos, hpos[~is_cited], hpos[~is_rand]])
    # chunk by variant blocks of whole users: refit each chunk separately (same seed per chunk)
    X = torch.empty(len(var_user), model.user.weight.shape[1])
    cost = np.bincount(ent_var, minlength=len(var_user))
    user_of_chunk = np.cumsum(np.bincount(np.searchsorted(uu, var_user), weights=cost, minlength=nU)) // chunk_entries
    vchunk = user_of_chunk[np.searchsorted(uu, var_user)]
    for c in np.unique(vchunk):
        vs = np.flatnonzero(vchunk == c)
        m = np.isin(ent_var, vs)
        X[vs] = _refit_users(model, var_user[vs], np.searchsorted(vs, ent_var[m]), ent_item[m], ent_slot[m], I,
                             ptr, hist, steps, lr, seed)
    with torch.no_grad():
        it = torch.as_tensor(items[pidx])
        s_full = _scores(model, X[np.searchsorted(uu, users[pidx])], it).double().numpy()
        s_cut = _scores(model, X[nU:nU + nP], it).double().numpy()
        s_rand = _scores(model, X[nU + nP:], it).double().numpy()
        s_orig = _scores(model, model.user.weight[torch.as_tensor(users[pidx])], it).double().numpy()
        # sanity: the full refit ranks like the trained row (Pearson over all items, per user)
        P, W = model.preference_tables()
        from ktup.models.scoring import preference_distance_all
        dist_all = lambda U: -preference_distance_all(U, model.item_vectors(), P, W, induction=model.scoring,  # noqa: E731
                                                      norm=model.norm, unit_normals=model.unit_normals)
        a, b = dist_all(X[:nU]), dist_all(model.user.weight[torch.as_tensor(uu)])
        a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
        corr = ((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)).double().numpy()
    dc, dr = s_full - s_cut, s_full - s_rand
    return {
        "protocol": "history = training interactions; user row re-fitted from the mean user row, everything "
                    "else frozen; same negatives for every variant of a user",
        "refit": {"steps": steps, "lr": lr, "seed": seed, "loss": "BPR, 1 uniform negative per entry per step"},
        "pairs": int(len(users)),
        "pairs_with_cited_history": int((n_cited > 0).sum()),
        "pairs_measured": int(nP),
        "pairs_left_out_too_few_uncited": int(((n_cited > 0) & ~ok).sum()),
        "mean_history_items_removed_cited": float(n_cited[pidx].mean()) if nP else None,
        "mean_history_items_removed_random": float(n_cited[pidx].mean()) if nP else None,
        "mean_history_size": float(n_hist[pidx].mean()) if nP else None,
        "history_cited_drop_fraction": float((dc > 0).mean()) if nP else None,
        "history_random_drop_fraction": float((dr > 0).mean()) if nP else None,
        "history_cited_mean_drop": float(dc.mean()) if nP else None,
        "history_random_mean_drop": float(dr.mean()) if nP else None,
        "history_cited_median_drop": float(np.median(dc)) if nP else None,
        "history_random_median_drop": float(np.median(dr)) if nP else None,
        "history_cited_beats_random_fraction": float((dc > dr).mean()) if nP else None,
        "refit_full_vs_trained_score_corr_mean": float(corr.mean()) if nU else None,
        "refit_full_minus_trained_score_mean": float((s_full - s_orig).mean()) if nP else None,
    }
