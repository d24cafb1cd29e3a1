"""Anchors for the planted-relation accuracy of benchmarks/explain_quality.py (part 1).

* :func:`bayes_ceiling` — the Bayes-optimal choice with the generator's *true* parameters (each
  user's relation distribution and favourite values): no method can beat it on average. The
  parameters are re-drawn with the generator's seed and checked against the dataset's KG; None
  when they do not reproduce it (the generator changed).
* :func:`additive_oracle` — the best *additive* rule ``argmax_k a_k(u) + b_k(i)`` fitted on the
  planted labels of the training interactions (ground truth a model never sees). KTUP's induction
  ``α_k = u·p̃_k + ĩ·p̃_k`` is additive in the user and the item, so this bounds what the
  model's own induced preference can reach, whatever the training term.
* :func:`latent_class_em` — a learning-free-of-KTUP estimator: EM on a per-user mixture over
  relations with per-(user, relation) distributions over KG neighbours (the generating story),
  fitted on the training interactions; its posterior for held-out pairs. (The shipped evidence
  step, ``ktup.explain.latent``, fits the same story by CVB0; ``method="em", nb_split="even"`` there
  equals this.)
* :func:`label_fed` — the same story's estimator when the planted relation of every training
  interaction is *given* (counts instead of responsibilities): what the latent-class step could
  reach if it inferred the training labels perfectly, with this much data per user.
"""

from __future__ import annotations

import numpy as np
import torch

from ktup.explain.evidence import EvidenceIndex, expand_csr


def bayes_ceiling(gen: dict, seed: int, d, users: np.ndarray, items: np.ndarray, truth: np.ndarray):
    """Accuracy of ``argmax_r pref[u, r] · P(item | u, r)`` with the generator's true parameters."""
    R, V = int(gen["n_relations"]), int(gen["values_per_relation"])
    n_items, n_users = int(gen["n_items"]), int(gen["n_users"])
    m, F, conc = int(gen.get("values_per_item", 1)), int(gen.get("favourites", 2)), float(gen.get("concentration", 0.3))
    if m != 1 or "n_entities" in gen:
        return None
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, V + 1) ** 0.8
    pop /= pop.sum()
    vals = rng.choice(V, size=(n_items, R, m), p=pop)
    for_cov = rng.permutation(n_items * m)[: min(V, n_items * m)]
    for r in range(R):
        flat = vals[:, r, :].reshape(-1)
        flat[for_cov] = np.arange(for_cov.size)
        vals[:, r, :] = flat.reshape(n_items, m)
    pref = rng.dirichlet(np.full(R, conc), size=n_users)
    fav = rng.choice(V, size=(n_users, R, F), p=pop)
    # check: the re-drawn values are the dataset's KG
    tok_item = np.array([int(t[1:]) for t in d.items.tokens])
    kg = d.kg_all
    ent_tok = np.asarray(d.entities.tokens, dtype=object)
    head_item = {e: int(t[1:]) for e, t in enumerate(ent_tok) if t.startswith("i")}
    try:
        for h, r, t in kg[:200].tolist():
            want = f"r{r}_v{vals[head_item[h], int(d.relations.token(r)[3:]), 0]}"
            if ent_tok[t] != want:
                return None
    except (KeyError, ValueError, IndexError):
        return None
    u_raw = np.array([int(t[1:]) for t in d.users.tokens])[users]
    i_raw = tok_item[items]
    rel_raw = np.array([int(t[3:]) for t in d.relations.tokens])
    deg = np.stack([np.bincount(vals[:, r, 0], minlength=V) for r in range(R)])
    v = vals[i_raw, :, 0]                                                    # (B, R) raw relation order
    lik = (fav[u_raw] == v[:, :, None]).sum(2) / deg[np.arange(R)[None, :], v]
    best_raw = (pref[u_raw] * lik).argmax(1)
    to_internal = np.argsort(rel_raw)                                        # raw relation → internal id
    return float((to_internal[best_raw] == truth).mean())


def additive_oracle(d, K: int, users: np.ndarray, items: np.ndarray, truth: np.ndarray,
                    steps: int = 300, l2: float = 1e-3, seed: int = 0) -> float:
    """Accuracy of the best additive rule fitted on the training interactions' planted labels."""
    pt = d.planted_relations["train"]
    ok = pt >= 0
    tu, ti, tl = (torch.as_tensor(x[ok]) for x in (d.train.users, d.train.items, pt))
    g = torch.Generator().manual_seed(seed)
    A = (0.01 * torch.randn(d.n_users, K, generator=g)).requires_grad_(True)
    B = (0.01 * torch.randn(d.n_items, K, generator=g)).requires_grad_(True)
    opt = torch.optim.Adam([A, B], lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(A[tu] + B[ti], tl) + l2 * (A.pow(2).sum() + B.pow(2).sum())
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = (A[torch.as_tensor(users)] + B[torch.as_tensor(items)]).argmax(1).numpy()
    return float((pred == truth).mean())


def latent_class_em(d, users: np.ndarray, items: np.ndarray, iters: int = 30, alpha: float = 0.5,
                    beta: float = 1.0) -> np.ndarray:
    """(B, R) EM posterior over relations for held-out pairs (module docstring)."""
    idx = EvidenceIndex(d.kg_all, d.item_entity, d.n_entities)
    f = idx._by_item
    R, E, U = idx.n_relations, idx.n_entities, d.n_users
    f_ptr = np.concatenate([[0], np.cumsum(np.bincount(f[:, 0], minlength=d.n_items))])
    rn = f[:, 1] * E + f[:, 2]
    deg = np.bincount(rn, minlength=R * E).astype(float)
    totdeg = np.maximum(np.bincount(f[:, 1], minlength=R).astype(float), 1)
    n_nb = np.maximum(np.bincount(f[:, 0] * R + f[:, 1], minlength=d.n_items * R).astype(float), 1)
    tu, ti = d.train.users, d.train.items
    own, pos = expand_csr(f_ptr, ti)
    r_ = f[pos, 1]
    ukeys, kinv = np.unique(tu[own] * (R * E) + rn[pos], return_inverse=True)
    base = deg[rn[pos]] / totdeg[r_]
    n_u = np.bincount(tu, minlength=U).astype(float)
    pi = np.full((U, R), 1.0 / R)
    theta = base.copy()
    c_key = np.zeros(ukeys.shape[0])
    n_ur = np.zeros((U, R))
    for _ in range(iters):
        g = np.zeros((len(tu), R))
        np.add.at(g, (own, r_), theta / deg[rn[pos]] / n_nb[ti[own] * R + r_])
        gam = pi[tu] * g
        gam /= np.maximum(gam.sum(1, keepdims=True), 1e-300)
        pi = np.zeros((U, R))
        np.add.at(pi, tu, gam)
        pi = (pi + alpha) / (n_u[:, None] + R * alpha)
        c_row = gam[own, r_] / n_nb[ti[own] * R + r_]
        c_key = np.bincount(kinv, weights=c_row, minlength=ukeys.shape[0])
        n_ur = np.zeros((U, R))
        np.add.at(n_ur, (tu[own], r_), c_row)
        theta = (c_key[kinv] + beta * base) / (n_ur[tu[own], r_] + beta)
    own2, pos2 = expand_csr(f_ptr, items)
    r2 = f[pos2, 1]
    key2 = users[own2] * (R * E) + rn[pos2]
    at = np.minimum(np.searchsorted(ukeys, key2), max(len(ukeys) - 1, 0))
    c2 = np.where(ukeys[at] == key2, c_key[at], 0.0) if len(ukeys) else np.zeros(len(key2))
    th2 = (c2 + beta * deg[rn[pos2]] / totdeg[r2]) / (n_ur[users[own2], r2] + beta)
    g2 = np.zeros((len(users), R))
    np.add.at(g2, (own2, r2), th2 / deg[rn[pos2]] / n_nb[items[own2] * R + r2])
    return pi[users] * g2


def label_fed(d, users: np.ndarray, items: np.ndarray, truth: np.ndarray, alpha: float = 0.3, beta: float = 0.3) -> float:
    """Accuracy of the latent-class posterior with the training interactions' planted labels given."""
    from ktup.explain.latent import LatentRelations

    ptr, hist = d.train.csr()
    lat = LatentRelations(EvidenceIndex(d.kg_all, d.item_entity, d.n_entities), ptr, hist, alpha=alpha, beta=beta)
    pl = d.planted_relations["train"]
    m = pl >= 0
    tu, ti, tl = d.train.users[m], d.train.items[m], pl[m]
    R, U = lat.R, lat.U
    cnt = np.bincount(tu * R + tl, minlength=U * R).reshape(U, R).astype(float)
    own, pos = expand_csr(lat.f_ptr, ti)
    keep = lat.rel[pos] == tl[own]
    keys, c = np.unique(tu[own][keep] * lat.NK + lat.rn[pos][keep], return_counts=True)
    w = lat.inv_nb[ti[own][keep] * R + tl[own][keep]]
    c = np.bincount(np.searchsorted(keys, tu[own][keep] * lat.NK + lat.rn[pos][keep]), weights=w, minlength=len(keys))
    lat.pi = (cnt + alpha) / (cnt.sum(1, keepdims=True) + R * alpha)
    lat._keys, lat._counts, lat.n_ur = keys, c, cnt
    lat.fitted[:] = True
    return float((lat.posterior(users, items).argmax(1) == truth).mean())
