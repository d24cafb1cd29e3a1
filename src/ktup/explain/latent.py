"""The latent-class evidence step: which KG relation most likely produced a (user, item) pair.

A generative story of a user's history, fitted without model weights or labels: user u picks
a relation r with probability ``pi[u, r]``, then one of the KG neighbours nb reachable through
r with probability ``theta[u, r, nb]``, then an item reaching nb through r uniformly
(``1 / deg(r, nb)``), so ``P(i | u, r) = Σ_nb∈N(i, r) theta[u, r, nb] / deg(r, nb)``. An
interaction's share of r is split over the item's neighbours by their posterior (``nb_split=
"posterior"``, the story's own EM; ``"even"`` splits it evenly and divides the likelihood by
the number of neighbours, the benchmark anchor's variant — the two agree when every item has
one neighbour per relation).
Smoothing: ``pi`` with a symmetric Dirichlet ``alpha``; ``theta`` shrunk towards the
catalogue's own spread ``deg(r, nb) / Σ deg(r, ·)`` with weight ``beta``, so a neighbour the
user never met keeps some mass. The posterior ``P(r | u, i) ∝ pi[u, r] · P(i | u, r)`` of a
pair is the evidence step's score.

Fitting (``method``): ``cvb0`` (default) — zero-order collapsed variational Bayes: each
history interaction's responsibilities are computed from the counts of the *other*
interactions (its own share left out), so an interaction cannot vote for its own relation;
``em`` — plain EM on the smoothed point estimates (the self-reinforcing variant, kept for
comparison). Both are vectorised over all interactions of a chunk of users.

Users share no parameter, so a user is fitted on first use (a CLI call fits one user in
milliseconds) and a batch of users is fitted in chunks of bounded memory; the result is
identical either way and deterministic (uniform start, fixed iterations, no sampling).
:func:`choose_relations` is the one rule explanations and benchmarks use to name a relation.
"""

from __future__ import annotations

import numpy as np

from ktup.explain.evidence import EvidenceIndex, expand_csr

#: Defaults of the evidence step (chosen on planted data, seeds 1-2; docs/EXPLANATIONS.md).
ITERS, ALPHA, BETA, METHOD, NB_SPLIT, MODEL_WEIGHT = 30, 0.3, 0.3, "cvb0", "posterior", 0.0


class LatentRelations:
    """EM latent-class posterior over relations for (user, item) pairs (module docstring).

    ``hist_indptr/hist_items``: the users' histories as CSR (the interactions it is fitted on).
    """

    def __init__(self, index: EvidenceIndex, hist_indptr: np.ndarray, hist_items: np.ndarray, *,
                 iters: int = ITERS, alpha: float = ALPHA, beta: float = BETA, method: str = METHOD,
                 max_entries: int = 4_000_000, nb_split: str = NB_SPLIT):
        if method not in ("cvb0", "em"):
            raise ValueError(f"LatentRelations: method must be 'cvb0' or 'em', got {method!r}")
        if nb_split not in ("posterior", "even"):
            raise ValueError(f"LatentRelations: nb_split must be 'posterior' or 'even', got {nb_split!r}")
        self.method, self.nb_split = method, nb_split
        f = index._by_item
        self.R, self.I = index.n_relations, index.n_items
        self.iters, self.alpha, self.beta = int(iters), float(alpha), float(beta)
        self.max_entries = int(max_entries)
        self.hist_indptr = np.asarray(hist_indptr, dtype=np.int64)
        self.hist_items = np.asarray(hist_items, dtype=np.int64)
        self.U = self.hist_indptr.shape[0] - 1
        self.f_ptr = np.zeros(self.I + 1, dtype=np.int64)
        np.cumsum(np.bincount(f[:, 0], minlength=self.I), out=self.f_ptr[1:])
        self.rel = f[:, 1]
        rn_keys, self.rn = np.unique(f[:, 1] * index.n_entities + f[:, 2], return_inverse=True)
        self.NK = max(int(rn_keys.shape[0]), 1)                         # compact (relation, neighbour) ids
        self.deg = np.bincount(self.rn, minlength=self.NK).astype(float)
        totdeg = np.maximum(np.bincount(self.rel, minlength=self.R), 1).astype(float)
        self.base = self.deg[self.rn] / totdeg[self.rel]                 # per fact: the catalogue's spread
        n_nb = np.bincount(f[:, 0] * self.R + self.rel, minlength=self.I * self.R).astype(float)
        self.inv_nb = 1.0 / np.maximum(n_nb, 1.0)                        # (I*R,) 1 / neighbours of (item, r)
        self.pi = np.zeros((self.U, self.R))
        self.n_ur = np.zeros((self.U, self.R))
        self.fitted = np.zeros(self.U, dtype=bool)
        self._keys = np.zeros(0, dtype=np.int64)                         # u * NK + rn, sorted
        self._counts = np.zeros(0)

    # ------------------------------------------------------------------ fitting
    def fit(self, users: np.ndarray | None = None) -> "LatentRelations":
        """Fit the given users (default: all) not fitted yet, in chunks of ≤ ``max_entries`` facts."""
        users = np.arange(self.U) if users is None else np.unique(np.asarray(users, dtype=np.int64))
        users = users[~self.fitted[users]]
        if users.shape[0] == 0:
            return self
        owner, hpos = expand_csr(self.hist_indptr, users)
        cost = np.bincount(owner, weights=np.diff(self.f_ptr)[self.hist_items[hpos]], minlength=users.shape[0])
        chunk = np.cumsum(cost) // max(self.max_entries, 1)
        for c in np.unique(chunk):
            self._fit_chunk(users[chunk == c])
        return self

    def _fit_chunk(self, us: np.ndarray) -> None:
        R, nu, a, b = self.R, us.shape[0], self.alpha, self.beta
        tu, hpos = expand_csr(self.hist_indptr, us)                       # local user of each interaction
        ti = self.hist_items[hpos]
        n = ti.shape[0]
        own, pos = expand_csr(self.f_ptr, ti)                             # facts of each interaction
        r, k = self.rel[pos], self.rn[pos]
        ukey, kinv = np.unique(tu[own] * self.NK + k, return_inverse=True)
        inv_nb = self.inv_nb[ti[own] * R + r] if self.nb_split == "even" else np.ones(own.shape[0])
        inv_w = inv_nb / self.deg[k]
        prior = b * self.base[pos]
        n_u = np.bincount(tu, minlength=nu).astype(float)
        ur = tu[own] * R + r
        pi_j = np.full((n, R), 1.0 / R)                                   # P(r) each interaction is scored with
        theta = self.base[pos].copy()                                     # P(nb | u, r) of each fact
        c_key, n_ur = np.zeros(ukey.shape[0]), np.zeros((nu, R))
        for _ in range(self.iters):
            ge = pi_j[own, r] * theta * inv_w                               # per fact: P(r, nb, item)
            tot = np.maximum(np.bincount(own, weights=ge, minlength=n), 1e-300)
            gam = np.bincount(own * R + r, weights=ge, minlength=n * R).reshape(n, R) / tot[:, None]   # (n, R)
            c_row = gam[own, r] * inv_nb if self.nb_split == "even" else ge / tot[own]
            c_key = np.bincount(kinv, weights=c_row, minlength=ukey.shape[0])
            n_ur = np.bincount(ur, weights=c_row, minlength=nu * R).reshape(nu, R)
            if self.method == "cvb0":   # each interaction scored with counts that leave its own share out
                pi_j = (np.maximum(n_ur[tu] - gam, 0) + a) / (n_u[tu, None] - 1 + R * a)
                theta = (np.maximum(c_key[kinv] - c_row, 0) + prior) / (np.maximum(n_ur.ravel()[ur] - gam[own, r], 0) + b)
            else:
                pi_j = ((n_ur + a) / (n_u[:, None] + R * a))[tu]
                theta = (c_key[kinv] + prior) / (n_ur.ravel()[ur] + b)
        self.pi[us] = (n_ur + a) / (n_u[:, None] + R * a)
        self.n_ur[us], self.fitted[us] = n_ur, True
        keys = us[ukey // self.NK] * self.NK + ukey % self.NK
        allk = np.concatenate([self._keys, keys])
        order = np.argsort(allk, kind="stable")
        self._keys, self._counts = allk[order], np.concatenate([self._counts, c_key])[order]

    # --------------------------------------------------------------- posterior
    def posterior(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(B, R) ``P(r | u, i)`` over relations (rows sum to 1; all zero for an item without facts)."""
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        self.fit(users)
        R, B = self.R, users.shape[0]
        own, pos = expand_csr(self.f_ptr, items)
        r, k = self.rel[pos], self.rn[pos]
        q = users[own] * self.NK + k
        if self._keys.shape[0]:
            at = np.minimum(np.searchsorted(self._keys, q), self._keys.shape[0] - 1)
            c = np.where(self._keys[at] == q, self._counts[at], 0.0)
        else:
            c = np.zeros(q.shape[0])
        theta = (c + self.beta * self.base[pos]) / (self.n_ur[users[own], r] + self.beta)
        split = self.inv_nb[items[own] * R + r] if self.nb_split == "even" else 1.0
        g = np.bincount(own * R + r, weights=theta * split / self.deg[k], minlength=B * R).reshape(B, R)
        p = self.pi[users] * g
        return p / np.maximum(p.sum(1, keepdims=True), 1e-300)


def choose_relations(logw: np.ndarray, support: np.ndarray, has_facts: np.ndarray,
                     posterior: np.ndarray | None = None, model_weight: float = MODEL_WEIGHT):
    """The evidence step over (B, K) arrays in one preference order: ``(chosen index (B,), rule (B,) str)``.

    Among relations with a KG path to the history (``support > 0``): the largest
    ``log posterior + model_weight · log w`` (rule ``latent-class``), or without ``posterior`` the largest
    ``log w + log support`` (rule ``kg-path``). No path at all: the model's top preference when
    the item has facts of it or has none (``model``), else the heaviest relation it has facts of
    (``facts``).
    """
    logw = np.asarray(logw, dtype=float)
    path = support > 0
    if posterior is None:
        comb, rule = logw + np.log(np.maximum(support, 1e-300)), "kg-path"
    else:
        comb, rule = np.log(np.maximum(posterior, 1e-300)) + model_weight * logw, "latent-class"
    comb = np.where(path, comb, -np.inf)
    top = logw.argmax(1)
    rows = np.arange(logw.shape[0])
    any_path = path.any(1)
    any_facts = has_facts.any(1)
    heavy = np.where(has_facts, logw, -np.inf).argmax(1)
    use_top = ~any_facts | has_facts[rows, top]
    k = np.where(any_path, comb.argmax(1), np.where(use_top, top, heavy))
    rules = np.where(any_path, rule, np.where(use_top, "model", "facts"))
    return k, rules
