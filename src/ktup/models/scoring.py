"""Scoring many candidates at once without building (B, N, K, d) tensors.

Two families of distances are computed here, both returned as *distances* (lower is better):

* **preference distances** (TUP/KTUP): user ``u`` (B rows) against items ``ĩ`` (N rows) with a
  preference induced per pair from the logits ``α[u,i,k] = u·p̃_k + ĩ·p̃_k``;
* **hyperplane distances** (TransH/TransE, KG side): per query row ``b`` a vector ``q_b`` and a
  normal ``w_b``, against candidate entities ``c``: ``‖q_b − (c − (w_b·c) w_b)‖``.

Squared L2 decomposes into matrix products plus per-row/per-k tables (see docs/MODEL.md,
"Inference at scale"): for ``v = y + p* − s ŵ`` with ``y = u − ĩ`` and ``s = ŵ·y``,
``‖v‖² = ‖y + p*‖² − 2 s (s + ŵ·p*) + s² ‖ŵ‖²``. Hard induction gathers per-(user, k), per-(item, k)
and per-k tables at the chosen k; soft induction mixes them with the weights ``a`` (quadratic
forms over K × K Gram matrices). L1 has no such decomposition: it materialises one
(B, chunk, d) difference for the selected/mixed preference, chunked over items so memory stays
within a budget.
"""

from __future__ import annotations

from typing import Iterator

import torch

from ktup.models.functional import EPS, distance, normal, project

_BYTES = 4  # float32 (a float64 model simply uses twice the memory)


def column_chunks(n_rows: int, n_cols: int, floats_per_cell: int, budget_mb: float) -> Iterator[slice]:
    """Column slices such that ``n_rows × chunk × floats_per_cell`` floats fit in ``budget_mb``."""
    per_col = max(1, n_rows * floats_per_cell * _BYTES)
    size = max(1, int(budget_mb * 2**20) // per_col)
    for start in range(0, n_cols, size):
        yield slice(start, min(n_cols, start + size))


def argmax_sum(a: torch.Tensor, b: torch.Tensor, user_chunk: int = 32) -> torch.Tensor:
    """(B, n) ``argmax_k (a[:, k] + b[:, k])`` over all pairs of rows of a (B, K) and b (n, K).

    A (max, +) product has no BLAS kernel; laid out K-first, the reduction runs over the
    outermost dimension (vectorised across pairs) on user chunks small enough to stay in cache,
    about twice as fast as ``(a[:, None] + b[None]).argmax(-1)``. Ties go to the lowest k, as
    with ``argmax``."""
    aT, bT = a.T.contiguous(), b.T.contiguous()              # (K, B), (K, n)
    out = torch.empty((a.shape[0], b.shape[0]), dtype=torch.long, device=a.device)
    for start in range(0, a.shape[0], user_chunk):
        stop = min(a.shape[0], start + user_chunk)
        out[start:stop] = (aT[:, start:stop, None] + bT[:, None, :]).max(0).indices
    return out


# ------------------------------------------------------------------ pairs (reference)
def preference_pair_distance(
    u: torch.Tensor, i: torch.Tensor, weights: torch.Tensor, P: torch.Tensor, W: torch.Tensor,
    norm: str, unit_normals: bool,
) -> torch.Tensor:
    """Plain per-pair formula: ``‖u⊥ + p* − ĩ⊥‖`` with ``p* = a·P``, ``w* = a·W``.

    u, i: (..., d); weights a: (..., K); P, W: (K, d). Returns (...). This is the training path
    and the reference the fast paths are tested against.
    """
    p_star = weights @ P                                    # (..., d)
    w_hat = normal(weights @ W, unit_normals)               # (..., d)
    return distance(project(u, w_hat) + p_star - project(i, w_hat), norm)


def preference_distance_per_k(
    u: torch.Tensor, i: torch.Tensor, P: torch.Tensor, W: torch.Tensor, norm: str, unit_normals: bool
) -> torch.Tensor:
    """(..., K): the pair's distance if preference k were the induced one. u, i: (..., d),
    broadcastable against each other."""
    w_hat = normal(W, unit_normals)                         # (K, d)
    return distance(project(u[..., None, :], w_hat) + P - project(i[..., None, :], w_hat), norm)


def preference_pair_expected_distance(
    u: torch.Tensor, i: torch.Tensor, P: torch.Tensor, W: torch.Tensor, norm: str, unit_normals: bool
) -> torch.Tensor:
    """``E_k f_k(u, ĩ)`` with ``k ~ softmax(α)``, α = (u + ĩ)·p̃ — the distance a hard
    (Gumbel-max) induction gives on average: P(argmax(α + g) = k) = softmax(α)_k. (...)."""
    a = torch.softmax((u + i) @ P.T, dim=-1)                # (..., K)
    return (a * preference_distance_per_k(u, i, P, W, norm, unit_normals)).sum(-1)


# ------------------------------------------------------------------ users × items (fast)
def preference_distance_all(
    U: torch.Tensor, I: torch.Tensor, P: torch.Tensor, W: torch.Tensor, *,
    induction: str, norm: str, unit_normals: bool, budget_mb: float = 256.0,
) -> torch.Tensor:
    """(B, N) distances of users U (B, d) to items I (N, d) through preferences P, W (K, d) (raw
    normals), deterministic induction (``hard``: argmax; ``soft``: softmax-mixed preference;
    ``expected``: softmax-weighted mean of the K distances), chunked over items."""
    out = U.new_empty((U.shape[0], I.shape[0]))
    if induction == "expected":
        _expected(U, I, P, normal(W, unit_normals), norm, out, budget_mb)
    elif norm == "l2" and induction == "hard":
        _l2_hard(U, I, P, normal(W, unit_normals), out, budget_mb)
    elif norm == "l2":
        _l2_soft(U, I, P, W, unit_normals, out, budget_mb)
    else:
        _l1(U, I, P, W, induction, unit_normals, out, budget_mb)
    return out


def _l2_hard(U, I, P, Wn, out, budget_mb) -> None:
    """Tables gathered at k = argmax α: f = ‖y + p_k‖² − 2s(s + ŵ_k·p_k) + s²‖ŵ_k‖², s = ŵ_k·y."""
    B, N, K = U.shape[0], I.shape[0], P.shape[0]
    up, ip = U @ P.T, I @ P.T                               # (B, K), (N, K): logit halves, also p·u, p·ĩ
    uw, iw = U @ Wn.T, I @ Wn.T                             # (B, K), (N, K)
    uu, ii = (U * U).sum(-1), (I * I).sum(-1)               # (B,), (N,)
    pp, wp, ww = (P * P).sum(-1), (Wn * P).sum(-1), (Wn * Wn).sum(-1)  # (K,)
    for sl in column_chunks(B, N, 2 * K + 8, budget_mb):
        k = argmax_sum(up, ip[sl])                          # (B, n) induced preference
        ipt, iwt = ip[sl].T, iw[sl].T                       # (K, n)
        s = uw.gather(1, k) - iwt.gather(0, k)              # ŵ·y, (B, n)
        sq = (uu[:, None] + ii[None, sl] - 2 * (U @ I[sl].T) + pp[k]
              + 2 * up.gather(1, k) - 2 * ipt.gather(0, k))  # ‖y + p_k‖²
        out[:, sl] = sq - 2 * s * (s + wp[k]) + s * s * ww[k]


def _expected(U, I, P, Wn, norm, out, budget_mb) -> None:
    """``Σ_k softmax(α)_k f_k``. Squared L2 separates: with ``s_k = ŵ_k·y``, ``y = u − ĩ``,
    ``f_k = ‖y‖² + A_k(u) + B_k(ĩ) − 2 c_k (ŵ_k·u)(ŵ_k·ĩ)`` (``c_k = ‖ŵ_k‖² − 2``), and
    ``softmax(α)_k ∝ e^{u·p̃_k} e^{ĩ·p̃_k}``, so the weighted sum is a ratio of (B × K) @ (K × n)
    matrix products — no (B, n, K) tensor, cheaper than the argmax path. Pairs whose normaliser
    underflows (logit spreads of ~80+) are recomputed directly. L1: the (B, n, K, d) differences,
    chunked to the budget (K times the hard path's work)."""
    B, N, K, d = U.shape[0], I.shape[0], P.shape[0], U.shape[1]
    up, ip = U @ P.T, I @ P.T                               # (B, K), (N, K)
    uw, iw = U @ Wn.T, I @ Wn.T                             # (B, K), (N, K)
    if norm == "l2":
        uu, ii = (U * U).sum(-1), (I * I).sum(-1)
        pp, wp, ww = (P * P).sum(-1), (Wn * P).sum(-1), (Wn * Wn).sum(-1)
        c = ww - 2
        A = pp + 2 * up + c * uw * uw - 2 * wp * uw         # (B, K)
        Bi = -2 * ip + c * iw * iw + 2 * wp * iw            # (N, K)
        Eu = torch.exp(up - up.max(1, keepdim=True).values)   # (B, K) in (0, 1]
        Ei = torch.exp(ip - ip.max(1, keepdim=True).values)   # (N, K)
        left = torch.cat([Eu * A, Eu, -2 * c * Eu * uw, Eu], 1)             # (B, 4K)
        right = torch.cat([Ei, Ei * Bi, Ei * iw], 1)                        # (N, 3K)
        tiny = torch.finfo(U.dtype).tiny * 1e6
        for sl in column_chunks(B, N, 4, budget_mb):
            R = right[sl]
            num = left[:, :K] @ R[:, :K].T + left[:, K:2 * K] @ R[:, K:2 * K].T \
                + left[:, 2 * K:3 * K] @ R[:, 2 * K:].T
            Z = left[:, 3 * K:] @ R[:, :K].T                # (B, n) softmax normaliser (scaled)
            res = uu[:, None] + ii[None, sl] - 2 * (U @ I[sl].T) + num / Z.clamp_min(tiny)
            bad = Z < tiny
            if bad.any():                                   # extreme logits: the direct formula
                rows = bad.any(1).nonzero()[:, 0]
                a = torch.softmax(up[rows, None, :] + ip[None, sl, :], dim=-1)
                sk = uw[rows, None, :] - iw[None, sl, :]
                f = (uu[rows, None] + ii[None, sl] - 2 * (U[rows] @ I[sl].T))[..., None] + pp \
                    + 2 * (up[rows, None, :] - ip[None, sl, :]) - 2 * sk * (sk + wp) + sk * sk * ww
                res[rows] = (a * f).sum(-1)
            out[:, sl] = res
        return
    Up = U[:, None, :] - uw[..., None] * Wn                 # (B, K, d) u on each hyperplane, + p_k
    Up += P
    Ip = I[:, None, :] - iw[..., None] * Wn                 # (N, K, d)
    for sl in column_chunks(B, N, 2 * K * d + 2 * K, budget_mb):
        a = torch.softmax(up[:, None, :] + ip[None, sl, :], dim=-1)
        f = torch.linalg.vector_norm(Up[:, None] - Ip[None, sl], 1, dim=-1)   # (B, n, K)
        out[:, sl] = (a * f).sum(-1)


def _l2_soft(U, I, P, W, unit_normals, out, budget_mb) -> None:
    """Weights a = softmax α mix the tables: p*, w* enter through quadratic forms aᵀGa over the
    K × K Gram matrices PPᵀ, WPᵀ, WWᵀ and linear forms in the per-user/per-item tables."""
    B, N, K = U.shape[0], I.shape[0], P.shape[0]
    up, ip = U @ P.T, I @ P.T                               # (B, K), (N, K)
    uu, ii = (U * U).sum(-1), (I * I).sum(-1)
    Tu = torch.stack([U @ W.T, up], -1)                     # (B, K, 2) w·u, p·u
    Ti = torch.stack([I @ W.T, ip], -1)                     # (N, K, 2) w·ĩ, p·ĩ
    G = torch.cat([P @ P.T, W @ P.T, W @ W.T], dim=1)       # (K, 3K)
    for sl in column_chunks(B, N, 6 * K + 8, budget_mb):
        a = torch.softmax(up[:, None, :] + ip[None, sl, :], dim=-1)       # (B, n, K)
        q_pp, q_wp, q_ww = ((a @ G).unflatten(-1, (3, K)) * a[..., None, :]).sum(-1).unbind(-1)  # (B, n) each
        lin = torch.bmm(a, Tu) - (a.transpose(0, 1) @ Ti[sl]).transpose(0, 1)  # (B, n, 2): w*·y, p*·y
        rho = q_ww.clamp_min(0).sqrt().clamp_min(EPS) if unit_normals else torch.ones_like(q_ww)
        s = lin[..., 0] / rho                               # ŵ·y
        sq = uu[:, None] + ii[None, sl] - 2 * (U @ I[sl].T) + q_pp + 2 * lin[..., 1]   # ‖y + p*‖²
        out[:, sl] = sq - 2 * s * (s + q_wp / rho) + s * s * (q_ww / (rho * rho))


def _l1(U, I, P, W, induction, unit_normals, out, budget_mb) -> None:
    """No exact decomposition: one (B, n, d) difference v = y + p* − s ŵ for the selected (hard:
    a (K, 2d) table lookup) or mixed (soft: one (B, n, 2K) @ (2K, d) product) preference, updated
    in place and reduced — about three passes over (B, n, d), the dominant cost."""
    B, N, K, d = U.shape[0], I.shape[0], P.shape[0], U.shape[1]
    Wm = W if induction == "soft" else normal(W, unit_normals)
    up, ip = U @ P.T, I @ P.T                               # (B, K), (N, K)
    Tu, Ti = U @ Wm.T, I @ Wm.T                             # (B, K) w·u, (N, K) w·ĩ
    PW = torch.cat([P, Wm], 0)                              # (2K, d) stacked for the soft mix
    PW_rows = torch.cat([P, Wm], 1)                         # (K, 2d) row k = [p_k | ŵ_k] for the lookup
    for sl in column_chunks(B, N, 3 * d + 4 * K, budget_mb):
        if induction == "hard":
            k = argmax_sum(up, ip[sl])                      # (B, n) induced preference
            s = Tu.gather(1, k) - Ti[sl].T.gather(0, k)     # ŵ_k·y, (B, n)
            g = torch.nn.functional.embedding(k, PW_rows)   # (B, n, 2d)
            v = g[..., :d] + U[:, None, :]                  # (B, n, d)
            v.addcmul_(s[..., None], g[..., d:], value=-1.0)
        else:
            a = torch.softmax(up[:, None, :] + ip[None, sl, :], dim=-1)   # (B, n, K)
            wy = torch.bmm(a, Tu[:, :, None])[..., 0] - (a * Ti[None, sl]).sum(-1)   # w*·y, (B, n)
            if unit_normals:                                # v = y + p* − (w*·y / ‖w*‖²) w*
                c = wy / ((a @ (W @ W.T)) * a).sum(-1).clamp_min(EPS * EPS)
            else:
                c = wy
            v = torch.cat([a, -c[..., None] * a], -1) @ PW  # p* − c w*, (B, n, d)
            v += U[:, None, :]
        v -= I[None, sl, :]
        out[:, sl] = torch.linalg.vector_norm(v, 1, dim=-1)


# ------------------------------------------------------------------ KG side
def hyperplane_distance_all(
    Q: torch.Tensor, Wn: torch.Tensor | None, C: torch.Tensor, *, norm: str, budget_mb: float = 256.0,
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, M) distances ``‖q_b − (c − (w_b·c) w_b)‖`` for queries Q (B, d) with normals Wn (B, d)
    (already unit or free; None = no projection, TransE) against candidates C (M, d).

    ``groups`` (B,): rows with equal ids share their normal (the relation id). L1 then projects
    the candidates once per distinct group and uses ``torch.cdist(p=1)``, which never builds a
    (B, M, d) difference — an order of magnitude faster than the materialised fallback.
    """
    B, M, d = Q.shape[0], C.shape[0], Q.shape[1]
    out = Q.new_empty((B, M))
    if norm == "l2":
        qq, cc = (Q * Q).sum(-1), (C * C).sum(-1)
        if Wn is not None:
            wq, ww = (Wn * Q).sum(-1), (Wn * Wn).sum(-1)    # (B,)
        for sl in column_chunks(B, M, 4, budget_mb):
            sq = qq[:, None] + cc[None, sl] - 2 * (Q @ C[sl].T)
            if Wn is not None:
                wc = Wn @ C[sl].T                           # (B, m)
                sq = sq + 2 * wc * wq[:, None] + wc * wc * (ww[:, None] - 2)
            out[:, sl] = sq
        return out
    if Wn is None:
        for sl in column_chunks(B, M, 2, budget_mb):
            out[:, sl] = torch.cdist(Q, C[sl], p=1)
        return out
    if groups is not None:
        uniq, inv = torch.unique(groups, return_inverse=True)
        first = torch.zeros(uniq.shape[0], dtype=torch.long, device=Q.device).scatter_reduce_(
            0, inv, torch.arange(B, device=Q.device), reduce="amin", include_self=False)  # a row per group
        for g in range(uniq.shape[0]):                      # one pass per distinct relation, not per row
            rows = (inv == g).nonzero()[:, 0]
            w = Wn[first[g]]                                # (d,)
            for sl in column_chunks(1, M, 2 * d, budget_mb):
                Cp = project(C[sl], w)                      # (m, d) candidates on the hyperplane
                out[rows, sl] = torch.cdist(Q[rows], Cp, p=1)
        return out
    for sl in column_chunks(B, M, 2 * d + 2, budget_mb):
        v = Q[:, None, :] - C[None, sl, :]                  # (B, m, d)
        v += (Wn @ C[sl].T)[..., None] * Wn[:, None, :]
        out[:, sl] = torch.linalg.vector_norm(v, 1, dim=-1)
    return out
