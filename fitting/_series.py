"""The profiled exponential problem as power series in the curvature, for shared windows.

When every closure of a batch chunk has the same window on the same time axis (1 Hz
loggers running one protocol), each sum the variable-projection engine needs is a power
series in x = a * tau_span whose coefficients are exact rationals times moments of the
data:

    phi_a(tau)   = sum_m  (-1)^(m-1) / m!                 a^(m-1) tau^m
    dphi/da      = sum_m  (-1)^(m-1) (m-1) / m!            a^(m-2) tau^m
    d2phi/da2    = sum_m  (-1)^(m-1) (m-1)(m-2) / m!       a^(m-3) tau^m

and products of two of them are series with convolved coefficients. With s = tau / span,
a term a^(m-d) tau^m is span^d x^(m-d) s^m, so

    sum_j f(tau_j) g(tau_j) = span^d  sum_m c_m x^(m-d) P_m,   P_m = sum_j s_j^m
    sum_j f(tau_j) y_j      = span^d  sum_m c_m x^(m-d) M_m,   M_m = sum_j s_j^m y_j

The moments M (one matrix product per chunk) and P (shared) are computed once; every
evaluation is then a product of the (N, K) matrix of powers of x with a few coefficient
vectors — no pass over the samples. The series are summed to ``TERMS`` terms and used for
x <= ``X_MAX``, where the truncation error is below 1e-17 relative and the alternating
terms cancel by less than a factor 1e3. The results equal :func:`_vp.evaluate` (with
``second=True``) to rounding; the tests compare both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from . import _vp

X_MAX = 3.0
TERMS = 52  # (2 X_MAX)^m / m! < 1e-20 for the coefficients of products beyond this


def _base(order: int) -> list[Fraction]:
    """Coefficients c_m of the d-th derivative of phi in a: sum_m c_m a^(m-1-order) tau^m."""
    out = []
    for m in range(TERMS):
        if m < 1 + order:
            out.append(Fraction(0))
            continue
        falling = 1
        for k in range(1, order + 1):
            falling *= m - k
        out.append(Fraction((-1) ** (m - 1) * falling, math.factorial(m)))
    return out


def _convolve(f: list[Fraction], g: list[Fraction]) -> list[Fraction]:
    out = [Fraction(0)] * TERMS
    for i, fi in enumerate(f):
        if fi == 0:
            continue
        for j, gj in enumerate(g[: TERMS - i]):
            out[i + j] += fi * gj
    return out


_PHI, _D1, _D2 = _base(0), _base(1), _base(2)
# (coefficients, degree d) of each sum; "y" sums use the data moments
_BASIS = {
    "sf": (_PHI, 1),
    "sff": (_convolve(_PHI, _PHI), 2),
    "sd": (_D1, 2),
    "sdf": (_convolve(_D1, _PHI), 3),
    "sdd": (_convolve(_D1, _D1), 4),
    "s2": (_D2, 3),
    "s2f": (_convolve(_D2, _PHI), 4),
    "s2d": (_convolve(_D2, _D1), 5),
}
_DATA = {"sfy": (_PHI, 1), "sdy": (_D1, 2), "s2y": (_D2, 3)}


def _as_float(coefs: list[Fraction]) -> np.ndarray:
    return np.array([float(c) for c in coefs])


_BASIS_F = [(_as_float(c), d) for c, d in _BASIS.values()]
_DATA_F = [(_as_float(c), d) for c, d in _DATA.values()]
_EXPONENTS = np.arange(TERMS)


@dataclass(frozen=True)
class SeriesProblem:
    """Closures sharing one window, prepared for :func:`evaluate`.

    ``basis`` is the (8, K) matrix turning powers of x into the eight basis sums (scaled
    by span^d), ``data`` the three (K, N) coefficient arrays of the data sums (terms along
    the first axis: the powers are built one term at a time over all closures).
    """

    span: float
    n: np.ndarray
    syy: np.ndarray
    basis: np.ndarray
    data: tuple[np.ndarray, np.ndarray, np.ndarray]

    def rows(self, idx: np.ndarray) -> SeriesProblem:
        if idx.size == self.n.size and np.array_equal(idx, np.arange(idx.size)):
            return self
        return SeriesProblem(
            self.span,
            self.n[idx],
            self.syy[idx],
            self.basis,
            tuple(d[:, idx] for d in self.data),  # type: ignore[arg-type]
        )


def prepare(
    tau: np.ndarray, yc: np.ndarray, syy: np.ndarray, out: np.ndarray | None = None
) -> SeriesProblem:
    """From the window's times ``tau`` (n,), starting at 0, and centred data ``yc`` (N, n).

    ``out``, a (3, K, >= N) array, receives the data coefficients (saves fresh allocations).
    """
    span = float(tau[-1] - tau[0])
    s = (tau - tau[0]) / span
    powers = s[:, None] ** _EXPONENTS[None, :]  # (n, K)
    p_m = powers.sum(axis=0)  # (K,)
    moments_t = powers.T @ yc.T  # (K, N): the data moments, terms along the first axis
    basis = np.zeros((len(_BASIS_F), TERMS))
    for row, (coefs, d) in enumerate(_BASIS_F):
        c = coefs * p_m * span**d
        basis[row, : TERMS - d] = c[d:]  # shift: the term x^(m-d) sits in column m-d
    rows = yc.shape[0]
    data = out[:, :, :rows] if out is not None else np.empty((3, TERMS, rows))
    for k, (coefs, d) in enumerate(_DATA_F):
        np.multiply(moments_t[d:], (coefs[d:] * span**d)[:, None], out=data[k, : TERMS - d])
        data[k, TERMS - d :] = 0.0
    n = np.full(rows, float(tau.size))
    return SeriesProblem(span, n, syy, basis, (data[0], data[1], data[2]))


def evaluate(a: np.ndarray, sp: SeriesProblem) -> _vp.Evaluation:
    """The profiled problem at curvature ``a`` (one per closure, a * span <= X_MAX)."""
    a = np.asarray(a, dtype=float)
    x = a * sp.span
    powers = np.empty((TERMS, a.size))  # powers[m] = x**m
    powers[0] = 1.0
    for m in range(1, TERMS):
        np.multiply(powers[m - 1], x, out=powers[m])
    sf, sff, sd, sdf, sdd, s2, s2f, s2d = sp.basis @ powers  # each (N,)
    sfy, sdy, s2y = (np.einsum("kn,kn->n", powers, d) for d in sp.data)
    n = sp.n
    zero = np.zeros_like(n)
    p, q, rss = _vp.solve_pq(n, zero, sp.syy, sf, sff, sfy)
    return _vp.finish_evaluation(
        a, n, p, q, rss, sf, sff, sfy, sd, sdd, sdf, sdy, (s2, s2f, s2y, s2d)
    )


def grid_rss(a_grid: np.ndarray, sp: SeriesProblem) -> np.ndarray:
    """Profiled RSS of every closure at curvatures ``a_grid`` (each a * span <= X_MAX), (N, K).

    Two small matrix products: the basis sums are shared, the data sums are the moments
    times a (terms x grid) matrix of powers.
    """
    x = a_grid * sp.span
    powers = x[None, :] ** _EXPONENTS[:, None]  # (K, G)
    sf = sp.basis[0] @ powers  # (G,)
    sff = sp.basis[1] @ powers
    sfy = sp.data[0].T @ powers  # (N, G)
    n = sp.n[:, None]
    syy = sp.syy[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        cff = sff[None, :] - sf[None, :] ** 2 / n
        rss = syy - sfy * sfy / cff
    rss = np.where(np.isfinite(rss) & (cff > 0), rss, syy)
    return np.maximum(rss, 0.0)
