"""Sampling uncertainty of the accounting lines by the delta method: exact, with no Monte Carlo error.

The lines' noise model is the one of the Poisson bootstrap (:mod:`.bootstrap`): every count is Poisson with the
observed (completed) count as mean, independently (GP referrals and first attendances once per practice x
provider x specialty x year, other activity per cell, cost scaling with activity at the cell's unit cost; lists,
need weights and tariffs fixed), and the provider ratios are pooled from the same counts. A line total ``G`` of a
unit (practice, group, PCT) is a smooth function of the counts ``n``, so its variance is, to first order,

    Var G = sum_n lambda_n (dG/dn)^2          (lambda_n: the count's mean, which is also its variance)

and the standard error has no Monte Carlo error at all: the same inputs give the same digits, and the second
significant figure of an interval is whatever the data say it is. The bootstrap's own error is about
``1 / sqrt(2 D)`` of the standard error with ``D`` draws (18 to 24% at 40 draws, 5% at 800 on the sample): a
stable second figure would need about 20,000 draws.

The gradient is computed in three pieces, each vectorised over cells:

1. **The decomposition's derivatives per cell**, with respect to the base and target years' factors: for Shapley
   in closed form over the same quadrature nodes (:func:`_shapley_gradients`); for LMDI-I, and for a cell with a
   factor zero in both years, by the complex step (Squire and Trapp 1998; Martins, Sturdza and Alonso 2003):
   ``f'(x) = Im f(x + ih) / h`` with ``h = 1e-30`` is exact to rounding for analytic functions, with no
   subtraction error (the two agree to 1e-12, tested). Undefined factors that took the other year's value pass
   their derivative to it.
2. **The factors' derivatives with respect to the counts**, in logarithms: the referral (or emergency) rate is
   the cell's count over its need-weighted list; ``local_variation`` is the cost over the product of the other
   factors, so ``d log local = d log cost - sum_j d log x_j``; a factor fixed by a rule (a ratio 0/0 set to 1,
   a chain gap filled) moves with the count it was filled from, or not at all.
3. **The provider ratios' channel**: a provider's pooled conversion, follow-ups per first and HRG mix depend on
   every practice's counts. For unit ``u`` and ratio slot ``s``, ``H[u, s]`` is the sum over the unit's cells of
   the line's derivative with respect to ``log ratio_s``, and ``J[s, n] = d log ratio_s / d n``, so
   ``dG_u/dn = D[n] 1(n in u) + (H J)[u, n]``; the square is expanded so that ``J diag(lambda) J^T`` (block
   diagonal: slots share counts only within a provider x specialty x year) is the only product formed.

The linearisation is where the method is approximate: where a count is small the line is not linear over its
Poisson range (a follow-up ratio over two first attendances), and a zero drawn by the bootstrap can switch a
rule (a chain gap). ``tests/stages/test_attribution_delta.py`` checks the gradient against finite differences of
the bootstrap's own computation, the hand case of an A&E line, and the standard errors against 1,000 bootstrap
draws. On the whole sample against 4,000 draws (Monte Carlo error 1.1%) the median ratio is 0.993 at practice,
consortium and PCT level (5-95%: 0.954-1.011 for practices): the linearisation leaves out under 1% of the
variance. Cost: 0.7 s on the sample; 15.7 s and 1.17 GiB (process maximum, the cells included) at 1,500 practices
(836,284 cell rows), against 40 bootstrap draws' 1.9 s and 29.8 s / 0.85 GiB and an interval whose second figure
is not stable.

References
----------
Oehlert GW (1992), "A note on the delta method", The American Statistician 46:27-29; Squire W, Trapp G (1998),
"Using complex variables to estimate derivatives of real functions", SIAM Review 40:110-112; Martins JRRA,
Sturdza P, Alonso JJ (2003), "The complex-step derivative approximation", ACM Trans Math Softw 29:245-262.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import sparse

from pbc_analysis.core.checks import check_choice
from pbc_analysis.stages.attribution.bootstrap import (
    _Block,
    _block_units,
    _bootstrap_base,
    _pool,
    _row_factors,
    _unit_frame,
)
from pbc_analysis.stages.attribution.common import FACTORS, LINE_FACTORS
from pbc_analysis.stages.attribution.decomposition import (
    _fill_pair,
    _line_parts,
    _pair_years,
    lmdi,
    shapley,
    spend_factors,
)
from pbc_analysis.stages.attribution.params import DEFAULTS, Method

__all__ = ["CHUNK_CELLS", "completion_gradients", "decomposition_delta", "lag_matrix"]

_LINES = [*LINE_FACTORS, "change"]
_IX = {f: i for i, f in enumerate(FACTORS)}
#: cells differentiated at a time (the results do not depend on it beyond the order of a sum's terms)
CHUNK_CELLS = 32768
#: the factors that move with the counts
_MOVING = [_IX[f] for f in ("referral_rate", "emergency_rate", "conversion", "follow_up", "hrg_mix",
                            "local_variation")]
#: the complex step (exact to rounding for analytic functions; no subtraction, so it can be this small)
_STEP = 1e-30


def _at_mean(base: Mapping[str, Any]) -> _Block:
    """The counts at their means as a one-draw block, with the provider ratios pooled from them: the point the
    bootstrap's draws are centred on (cost = activity x unit cost, as in every draw)."""
    blk = _Block(base["Rg"][None, :].astype(float), base["Fg"][None, :].astype(float),
                 base["col"]["activity"][None, :].astype(float))
    _pool(base, blk)
    return blk


def _count_index(base: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Each row's counts as positions in one vector ``[R per group, F per group, A per row]`` and their means."""
    ng, n = base["Rg"].size, base["grp"].size
    lam = np.concatenate([base["Rg"], base["Fg"], np.where(base["is_first"], 0.0, base["col"]["activity"])])
    r_at, f_at = base["grp"], ng + base["grp"]
    a_at = np.where(base["is_first"], f_at, 2 * ng + np.arange(n))   # a first attendance's activity is its F
    return {"lam": lam, "R": r_at, "F": f_at, "A": a_at}


def _jacobian(base: Mapping[str, Any], sums: Mapping[str, np.ndarray], at: Mapping[str, np.ndarray]) -> sparse.csr_matrix:
    """``J[s, n] = d log ratio_s / d count_n`` for the slots ``[conversion per g1, follow-up per g2, HRG mix per
    g2]`` (zero where the ratio is undefined)."""
    n1, n2, once, elective = base["n1"], base["n2"], base["once"], base["elective"]
    g1, g2 = base["g1"], base["g2"]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = {k: np.where(sums[k] > 0, 1.0 / np.where(sums[k] > 0, sums[k], 1.0), 0.0)
               for k in ("rs", "fs", "as", "fs2", "at", "cs")}
    rows, cols, vals = [], [], []

    def add(slot: np.ndarray, count: np.ndarray, v: np.ndarray, mask: np.ndarray) -> None:
        rows.append(slot[mask])
        cols.append(count[mask])
        vals.append(v[mask])

    # conversion = sum F / sum R over the once rows of (provider, specialty, year)
    add(g1, at["R"], -inv["rs"][g1], once)
    add(g1, at["F"], inv["fs"][g1], once)
    # follow-ups per first = sum A / sum F over (provider, specialty, pod, year), elective pods
    add(n1 + g2, at["A"], inv["as"][g2], elective)
    add(n1 + g2, at["F"], -inv["fs2"][g2], elective)
    # HRG mix = sum A x unit cost / sum A x tariff
    add(n1 + n2 + g2, at["A"], base["unit_cost"] * inv["cs"][g2] - base["tariff0"] * inv["at"][g2],
        np.ones(g2.size, dtype=bool))
    m, N = n1 + 2 * n2, at["lam"].size
    J = sparse.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(m, N))
    return J.tocsr()


def _line_matrix() -> np.ndarray:
    """Which factors make up each line ``(lines, factors)``; ``change`` is all of them."""
    M = np.zeros((len(_LINES), len(FACTORS)))
    for i, line in enumerate(LINE_FACTORS):
        M[i, [_IX[f] for f in LINE_FACTORS[line]]] = 1.0
    M[-1] = 1.0
    return M


def _shapley_gradients(f0: np.ndarray, f1: np.ndarray) -> np.ndarray:
    """Derivatives ``(2, lines, cells, factors)`` of the Shapley lines with respect to the base and target factors,
    in closed form where no factor is zero at the quadrature nodes.

    Line l is ``int_0^1 S_l(t) dt``, ``S_l = sum_{k in l} d_k P(t) / z_k(t)``, ``z = x0 + t d``, ``d = x1 - x0``,
    ``P = prod z`` (:func:`.decomposition.shapley`). With ``r = d / z`` and ``s_l = sum_{k in l} r_k``,
    ``dS_l/dz_m = (P / z_m)(s_l - 1(m in l) r_m)``, so ``dl/dx1_m = 1(m in l) int P/z_m + int t dS_l/dz_m`` and
    ``dl/dx0_m = -1(m in l) int P/z_m + int (1 - t) dS_l/dz_m``: polynomials of degree below K in t, integrated
    exactly by the same Gauss-Legendre nodes.
    """
    M = _line_matrix()
    K = f0.shape[-1]
    nodes, wts = np.polynomial.legendre.leggauss(K // 2 + 1)
    d = f1 - f0
    g = np.zeros((2, M.shape[0], *f0.shape))
    with np.errstate(divide="ignore", invalid="ignore"):
        for t, w in zip((nodes + 1) / 2, wts / 2):
            z = f0 + t * d
            Pz = np.prod(z, axis=1)[:, None] / z           # P / z_m
            r = d / z
            A = Pz[None] * ((r @ M.T).T[:, :, None] - M[:, None, :] * r[None])   # dS_l / dz_m
            own = M[:, None, :] * Pz[None]
            g[1] += w * (own + t * A)
            g[0] += w * (-own + (1 - t) * A)
    return g


def _complex_step(f0: np.ndarray, f1: np.ndarray, method: str) -> np.ndarray:
    """The same derivatives by the complex step through :func:`.decomposition.shapley` or :func:`.lmdi`, for the
    factors that move with the counts (any cell, zeros included)."""
    g = np.zeros((2, len(_LINES), *f0.shape))

    def lines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        parts = (lmdi(np.prod(a, axis=-1), np.prod(b, axis=-1), a, b) if method == "lmdi" else shapley(a, b))
        ln = _line_parts(parts)
        return np.stack([ln[line] for line in LINE_FACTORS] + [parts.sum(axis=-1)])

    for side in (0, 1):
        for k in _MOVING:   # list, need and tariff are fixed: their derivatives are never used
            a, b = f0.astype(complex), f1.astype(complex)
            (a if side == 0 else b)[:, k] += 1j * _STEP
            g[side, :, :, k] = lines(a, b).imag / _STEP
    return g


def _cell_gradients(x0: np.ndarray, x1: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Derivatives of every line ``(lines, cells, factors)`` with respect to the base and the target year's factors
    (NaN factors pass theirs to the other year's value, as :func:`.decomposition._fill_pair` fills them): Shapley's
    in closed form, by the complex step for a cell with a factor zero in both years and for LMDI-I."""
    n0, n1_ = np.isnan(x0), np.isnan(x1)
    f0, f1 = _fill_pair(x0, x1)
    if method == "shapley":
        g = _shapley_gradients(f0, f1)
        zero = np.any((f0 == 0) & (f1 == 0), axis=1)
        if zero.any():
            g[:, :, zero] = _complex_step(f0[zero], f1[zero], method)
    else:
        g = _complex_step(f0, f1, method)
    # a filled factor is the other year's value: its derivative goes there; filled in both (1) moves nothing
    g0, g1 = g
    return (np.where(n0, 0.0, g0 + np.where(n1_, g1, 0.0)), np.where(n1_, 0.0, g1 + np.where(n0, g0, 0.0)))


def _row_weights(base: Mapping[str, Any], blk: _Block, rows: np.ndarray, X: np.ndarray, V: np.ndarray,
                 G: np.ndarray, at: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """For one year's rows of the cells: the direct derivative of every line with respect to the rows' own counts
    (``(lines, rows)`` values at count positions) and the weights on the provider ratios' logarithms."""
    assert blk.conv is not None and blk.fu is not None and blk.hrg is not None
    elective, first = base["elective"][rows], base["is_first"][rows]
    col = base["col"]
    R, F = base["Rg"][base["grp"][rows]], base["Fg"][base["grp"][rows]]
    A = np.where(first, F, col["activity"][rows])
    live_v = V > 0
    loc = np.where(live_v, X[:, _IX["local_variation"]], 0.0)
    Gl = G[:, :, _IX["local_variation"]]
    E = {f: G[:, :, _IX[f]] * np.nan_to_num(X[:, _IX[f]]) - Gl * loc for f in
         ("referral_rate", "emergency_rate", "conversion", "follow_up", "hrg_mix")}
    # which factors move with the counts (a pooled ratio that was 0/0 is fixed at 1 on a row with spend)
    live = {"referral_rate": elective & ((R > 0) | (F > 0) | (A > 0)), "emergency_rate": ~elective & (A > 0),
            "conversion": elective & ~np.isnan(blk.conv[0, base["g1"][rows]]),
            "follow_up": elective & ~first & ~np.isnan(blk.fu[0, base["g2"][rows]]),
            "hrg_mix": ~np.isnan(blk.hrg[0, base["g2"][rows]])}
    E = {f: np.where(live[f], e, 0.0) for f, e in E.items()}
    # the referral rate's count: R, or (chain gaps) the first attendances, or the activity it was filled from
    r_src = np.where(R > 0, at["R"][rows], np.where(F > 0, at["F"][rows], at["A"][rows]))
    r_val = np.where(R > 0, R, np.where(F > 0, F, A))
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_r = np.where(r_val > 0, 1.0 / np.where(r_val > 0, r_val, 1.0), 0.0)
        inv_a = np.where(A > 0, 1.0 / np.where(A > 0, A, 1.0), 0.0)
    pos = np.concatenate([r_src, at["A"][rows], at["A"][rows]])
    val = np.concatenate([E["referral_rate"] * inv_r, E["emergency_rate"] * inv_a,
                          np.where(live_v, Gl * loc, 0.0) * inv_a], axis=1)
    return pos, val, {"conversion": E["conversion"], "follow_up": E["follow_up"], "hrg_mix": E["hrg_mix"]}


def _level_variance(unit_n: np.ndarray, unit_r: np.ndarray, size: int, lam: np.ndarray, D: np.ndarray,
                    slots: np.ndarray, W: np.ndarray, J: sparse.csr_matrix, Q: sparse.csr_matrix) -> np.ndarray:
    """``sum_n lambda_n (D_n 1(n in u) + (H J)[u, n])^2`` per line and unit (``D``, ``W``: ``(lines, ...)``), one line
    at a time (``H`` and the cross term's ``K`` are ``(units, slots)``, sparse)."""
    m = J.shape[0]
    Jc = J.tocoo()
    ok = unit_r >= 0
    keep_n = unit_n >= 0
    jn = keep_n[Jc.col]
    col, row, jv = Jc.col[jn], Jc.row[jn], Jc.data[jn]
    u_col, u_r, s_r = unit_n[col], unit_r[ok], slots[ok]
    out = np.zeros((D.shape[0], size))
    for i, d in enumerate(D):
        H = sparse.csr_matrix((W[i, ok], (u_r, s_r)), shape=(size, m))
        # the cross term sum_s H[u, s] K[u, s], K[u, s] = sum over the unit's counts n of J[s, n] lambda_n D_n
        K = sparse.csr_matrix((jv * (lam * d)[col], (u_col, row)), shape=(size, m))
        t1 = np.bincount(unit_n[keep_n], weights=(lam * d ** 2)[keep_n], minlength=size)
        t2 = np.asarray(H.multiply(K).sum(axis=1)).ravel()
        t3 = np.asarray((H @ Q).multiply(H).sum(axis=1)).ravel()
        out[i] = t1 + 2 * t2 + t3
    return out


def _level_gradient(unit_n: np.ndarray, unit_r: np.ndarray, size: int, D: np.ndarray, slots: np.ndarray,
                    W: np.ndarray, J: sparse.csr_matrix, Lt: sparse.csr_matrix) -> np.ndarray:
    """``sum_n (D_n 1(n in u) + (H J)[u, n]) L[n, q]`` per line, unit and column ``q`` of ``Lt`` ``(counts, Q)``:
    each line's derivative with respect to moving the counts along ``L`` (``(lines, units, Q)``)."""
    m = J.shape[0]
    ok, keep_n = unit_r >= 0, unit_n >= 0
    U = sparse.csr_matrix((np.ones(int(keep_n.sum())), (np.flatnonzero(keep_n), unit_n[keep_n])),
                          shape=(unit_n.size, size))
    JL = (J @ Lt).toarray()                                             # (slots, Q)
    out = np.zeros((D.shape[0], size, Lt.shape[1]))
    for i, d in enumerate(D):
        H = sparse.csr_matrix((W[i, ok], (unit_r[ok], slots[ok])), shape=(size, m))
        out[i] = (U.T @ Lt.multiply(d[:, None])).toarray() + H @ JL
    return out


def lag_matrix(cells: pd.DataFrame, completeness: pd.DataFrame) -> sparse.csr_matrix:
    """How each count of the noise model moves with the completed totals: ``L[n, q]`` the completed activity of
    lagged month and pod ``q`` (the rows of ``completeness``) in count ``n`` (:func:`_count_index` order).

    Parameters
    ----------
    cells : pandas.DataFrame
        :func:`pbc_analysis.stages.attribution.decomposition.spend_cells` with ``lagged=True``.
    completeness : pandas.DataFrame
        :func:`pbc_analysis.stages.attribution.panel.completeness_factors`.

    Returns
    -------
    scipy.sparse.csr_matrix
        ``(counts, len(completeness))``; a first attendance's part is on its group's first-attendance count.

    References
    ----------
    The noise model of :mod:`.bootstrap` (counts per group and per row).
    """
    base = _bootstrap_base(cells)
    at = _count_index(base)
    months = sorted(set(completeness["month"].astype(str)))
    pod = cells["pod"].astype(str).to_numpy()
    c_month = completeness["month"].astype(str).to_numpy()
    rows, cols, vals = [], [], []
    for j, m in enumerate(months):
        part = cells[f"lagged_{j}"].to_numpy(dtype=float)
        at_m = np.flatnonzero(c_month == m)                              # the month's rows of the table, by pod
        hit = pd.Index(completeness["pod"].astype(str).to_numpy()[at_m]).get_indexer(pod)
        q = np.where(hit >= 0, at_m[np.maximum(hit, 0)], -1)
        keep = (part != 0) & (q >= 0)
        rows.append(at["A"][keep])
        cols.append(q[keep])
        vals.append(part[keep])
    return sparse.coo_matrix((np.concatenate(vals) if vals else np.zeros(0),
                              (np.concatenate(rows) if rows else np.zeros(0, int), np.concatenate(cols) if cols
                               else np.zeros(0, int))), shape=(at["lam"].size, len(completeness))).tocsr()


def decomposition_delta(cells: pd.DataFrame, base_year: str, years: Sequence[str], method: str = DEFAULTS["method"],
                        groups: Mapping[str, Mapping[str, str]] | None = None) -> pd.DataFrame:
    """Standard errors of the accounting lines by the delta method (module docstring).

    Parameters
    ----------
    cells : pandas.DataFrame
        :func:`pbc_analysis.stages.attribution.decomposition.spend_cells` with rows in ``base_year`` and each of
        ``years``.
    base_year : str
    years : sequence of str
    method : {"shapley", "lmdi"}
    groups : mapping, optional
        ``{level: {practice_code: unit}}`` (e.g. consortia).

    Returns
    -------
    pandas.DataFrame
        ``level, unit, financial_year, line, std_error`` for the lines of :data:`LINE_FACTORS` and ``change``, in
        the layout of :func:`pbc_analysis.stages.attribution.bootstrap.decomposition_intervals`.

    References
    ----------
    Oehlert GW (1992), The American Statistician 46:27-29 (the delta method); Martins JRRA, Sturdza P, Alonso JJ
    (2003), ACM Trans Math Softw 29:245-262 (the complex step).
    """
    method = check_choice("method", method, Method)
    var, units, _, _ = _line_variances(cells, base_year, years, method, groups)
    return _unit_frame({key: np.sqrt(np.maximum(v, 0.0)) for key, v in var.items()}, units)


def completion_gradients(cells: pd.DataFrame, lagged: sparse.csr_matrix, base_year: str, years: Sequence[str],
                         method: str = DEFAULTS["method"], groups: Mapping[str, Mapping[str, str]] | None = None,
                         with_std_errors: bool = False, completeness: np.ndarray | None = None
                         ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """Each accounting line's derivative with respect to the log of each completed total (:mod:`.completion`), and the
    variance of the late records' thinning.

    Which of a month's records arrive late is chance: the month's observed count of a cell is binomial, ``n c`` of
    ``n`` on average. The completed cells of a pod-month add up to its completed total whatever the draw (``c`` is
    observed / expected of the total), and the total's error is the covariance's; what the thinning adds is how
    that total is shared between cells: with ``g_n = dG/dn`` and ``k_q = (1 - c_q) / c_q``,
    ``Var = sum_q k_q sum_n L[n, q] (g_n - gbar_q)^2``, ``gbar_q`` the ``L``-weighted mean of ``g`` over the
    pod-month, i.e. ``sum_n g_n^2 sum_q k_q L[n, q] - sum_q k_q a_q^2 / E_q`` with ``a_q`` the line's gradient
    along column ``q`` and ``E_q`` the column's total (a line that weights every record of the pod-month alike,
    such as one cell, gets none).

    Parameters
    ----------
    cells : pandas.DataFrame
        As :func:`decomposition_delta`.
    lagged : scipy.sparse.csr_matrix
        :func:`lag_matrix` of the cells.
    base_year, years, method, groups
        As :func:`decomposition_delta`.
    with_std_errors : bool
        Also :func:`decomposition_delta`'s standard errors, from the same pass.
    completeness : numpy.ndarray, optional
        The completeness of each column of ``lagged`` (the table's ``completeness``), for the thinning variance.

    Returns
    -------
    gradients : pandas.DataFrame
        ``level, unit, financial_year, line, q, gradient`` (GBP per unit log change of completed total ``q``, the
        row of the completeness table), nonzero rows only.
    thinning : pandas.DataFrame
        ``level, unit, financial_year, line, variance``: the thinning variance (GBP squared; empty without
        ``completeness``).
    std_errors : pandas.DataFrame or None

    References
    ----------
    Oehlert GW (1992), The American Statistician 46:27-29 (the delta method).
    """
    method = check_choice("method", method, Method)
    thinning, kappa_e = None, None
    if completeness is not None and lagged.shape[1]:
        c = np.asarray(completeness, dtype=float)
        kappa = (1.0 - c) / c
        thinning = np.asarray(lagged @ kappa).ravel()
        total = np.asarray(lagged.sum(axis=0)).ravel()
        kappa_e = np.divide(kappa, total, out=np.zeros_like(kappa), where=total > 0)
    var, units, grads, thin = _line_variances(cells, base_year, years, method, groups, lagged=lagged,
                                              thinning=thinning)
    frames, thin_frames = [], []
    for (level, y, line), g in grads.items():
        labels = units[level][1] if level != "pct" else np.array(["PCT"])
        u, q = np.nonzero(g)
        frames.append(pd.DataFrame({"level": level, "unit": labels[u].astype(str), "financial_year": y,
                                    "line": line, "q": q, "gradient": g[u, q]}))
        t = thin.get((level, y, line))
        if t is not None and kappa_e is not None:   # centred on each pod-month's mean gradient (the docstring)
            t = np.maximum(t - (g ** 2) @ kappa_e, 0.0)
        if t is not None and np.any(t > 0):
            u = np.flatnonzero(t > 0)
            thin_frames.append(pd.DataFrame({"level": level, "unit": labels[u].astype(str), "financial_year": y,
                                             "line": line, "variance": t[u]}))
    cols = ["level", "unit", "financial_year", "line", "q", "gradient"]
    out = pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)
    tcols = ["level", "unit", "financial_year", "line", "variance"]
    thinned = pd.concat(thin_frames, ignore_index=True)[tcols] if thin_frames else pd.DataFrame(columns=tcols)
    se = _unit_frame({key: np.sqrt(np.maximum(v, 0.0)) for key, v in var.items()}, units) if with_std_errors else None
    return out, thinned, se


def _line_variances(cells: pd.DataFrame, base_year: str, years: Sequence[str], method: str,
                    groups: Mapping[str, Mapping[str, str]] | None, weights: np.ndarray | None = None,
                    lagged: sparse.csr_matrix | None = None, thinning: np.ndarray | None = None
                    ) -> tuple[dict[tuple[str, str, str], np.ndarray], Any, dict, dict]:
    """``sum_n w_n (dG/dn)^2`` per level, year and line, and the units; ``w`` the counts' means (their Poisson
    variances) unless ``weights`` (in the order of :func:`_count_index`) is given: with one weight 1 and the rest
    0, the square of one count's derivative (what the tests compare with finite differences). With ``lagged``
    (:func:`lag_matrix`), also every line's derivatives along its columns (:func:`_level_gradient`); with
    ``thinning`` (extra variance per count), also ``sum_n thinning_n (dG/dn)^2``."""
    fac = spend_factors(cells)
    _, p0, p1 = _pair_years(fac, base_year, years)
    if np.any(p0 < 0) or np.any(p1 < 0):
        raise ValueError("cells must have a row for every cell in base_year and each of years, as spend_cells gives")
    base = _bootstrap_base(fac)
    units = _block_units(base, p0, groups)
    blk = _at_mean(base)
    assert blk.sums is not None
    sums = {k: v[0] for k, v in blk.sums.items()}   # the same sums the ratios at the means were pooled from
    at = _count_index(base)
    J = _jacobian(base, sums, at)
    lam = at["lam"] if weights is None else np.asarray(weights, dtype=float)
    Q = (J @ sparse.diags(lam) @ J.T).tocsr()
    Qt = (J @ sparse.diags(thinning) @ J.T).tocsr() if thinning is not None else None
    n1, n2 = base["n1"], base["n2"]
    pc, prac_labels = pd.factorize(base["prac"])
    prac_of_grp = np.zeros(base["Rg"].size, dtype=np.int64)
    prac_of_grp[base["grp"]] = pc
    prac_n = np.concatenate([prac_of_grp, prac_of_grp, pc])   # the practice of every count
    res, grads, thin = {}, {}, {}
    nc = p0.size
    for j, y in enumerate(years):
        D = np.zeros((len(_LINES), lam.size))
        parts: dict[str, list[np.ndarray]] = {"slots": [], "W": [], "cell": []}
        for c0 in range(0, nc, CHUNK_CELLS):   # working arrays bounded by the chunk, whatever the cells
            ch = np.arange(c0, min(nc, c0 + CHUNK_CELLS))
            rows = np.concatenate([p0[ch], p1[ch, j]])
            X, V = _row_factors(base, blk, rows)
            g0, g1 = _cell_gradients(X[0, :ch.size], X[0, ch.size:], method)
            pos, val, Wr = _row_weights(base, blk, rows, X[0], V[0], np.concatenate([g0, g1], axis=1), at)
            for i, v in enumerate(val):
                D[i] += np.bincount(pos, weights=v, minlength=lam.size)
            parts["slots"].append(np.concatenate([base["g1"][rows], n1 + base["g2"][rows], n1 + n2 + base["g2"][rows]]))
            parts["W"].append(np.concatenate([Wr["conversion"], Wr["follow_up"], Wr["hrg_mix"]], axis=1))
            parts["cell"].append(np.tile(np.concatenate([ch, ch]), 3))
        slots, W, cell = (np.concatenate(parts[k], axis=-1) for k in ("slots", "W", "cell"))
        for level, (codes, labels) in {**units, "pct": (np.zeros(nc, dtype=np.int64), np.array(["PCT"]))}.items():
            of_prac = np.full(prac_labels.size, -1, dtype=np.int64)
            of_prac[pc[p0]] = codes
            var = _level_variance(of_prac[prac_n], codes[cell], labels.size, lam, D, slots, W, J, Q)
            grad = (_level_gradient(of_prac[prac_n], codes[cell], labels.size, D, slots, W, J, lagged)
                    if lagged is not None and lagged.shape[1] else None)
            var_t = (_level_variance(of_prac[prac_n], codes[cell], labels.size, thinning, D, slots, W, J, Qt)
                     if Qt is not None and thinning is not None else None)
            for i, line in enumerate(_LINES):
                res[(level, y, line)] = var[i]
                if grad is not None:
                    grads[(level, y, line)] = grad[i]
                if var_t is not None:
                    thin[(level, y, line)] = var_t[i]
    return res, units, grads, thin

