"""Getis-Ord Gi* on a hexagonal grid: neighbours, z-scores, p-values and confidence bins.

Pure numpy over the counts of all cells at once (the grid and the counts come from PostgreSQL,
app/analysis/hotspots.py); checked against esda in tests/test_hotspots.py.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

BAND = 1.5  # neighbours: centres within BAND x the cell spacing (the 6 adjacent hexagons)
# (bin, two-sided p threshold): 99 %, 95 %, 90 % confidence
LEVELS = ((3, 0.01), (2, 0.05), (1, 0.10))


def hex_neighbours(cells: list[tuple[int, int]]) -> list[list[int]]:
    """For each cell, the indices of the cells whose centres lie within BAND (1.5) x the
    spacing of its centre: on the hexagonal lattice, exactly the (up to) six adjacent cells."""
    index = {c: n for n, c in enumerate(cells)}
    out: list[list[int]] = []
    for i, j in cells:
        side = (j, j + 1) if i % 2 else (j - 1, j)  # odd columns sit half a cell higher
        near = [(i, j - 1), (i, j + 1)] + [(i + di, jj) for di in (-1, 1) for jj in side]
        out.append([index[c] for c in near if c in index])
    return out


def gi_star(counts: npt.NDArray[np.int64], neighbours: list[list[int]]) -> npt.NDArray[np.float64]:
    """Getis-Ord Gi* z-scores with binary weights, the cell itself included (Getis & Ord 1995,
    as ArcGIS Hot Spot Analysis and esda.G_Local(star=True, transform='B')); NaN where
    undefined (all counts equal, or a cell whose neighbourhood is the whole grid)."""
    x = counts.astype(np.float64)
    n = len(x)
    if n < 2:
        return np.full(n, np.nan)
    mean = float(x.mean())
    sd = math.sqrt(max(float((x * x).mean() - mean * mean), 0.0))
    rows = np.repeat(np.arange(n), [len(nb) for nb in neighbours])
    cols = np.fromiter((k for nb in neighbours for k in nb), dtype=np.int64, count=len(rows))
    lag = x.copy()
    np.add.at(lag, rows, x[cols])
    w = 1.0 + np.array([len(nb) for nb in neighbours], dtype=float)  # Σw = Σw² (binary)
    den = sd * np.sqrt((n * w - w * w) / (n - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (lag - mean * w) / den
    z[~(den > 1e-12)] = np.nan
    return z


def two_sided_p(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Two-sided normal p-values (NaN stays NaN)."""
    return np.array([math.erfc(abs(v) / math.sqrt(2)) if v == v else math.nan for v in z])


def bh_threshold(p: npt.NDArray[np.float64], alpha: float) -> float:
    """Benjamini-Hochberg: the largest p(k) with p(k) <= k/m * alpha (m = tested cells);
    -1 when none qualifies."""
    ps = np.sort(p[~np.isnan(p)])
    m = len(ps)
    ok = np.nonzero(ps <= alpha * np.arange(1, m + 1) / m)[0]
    return float(ps[ok[-1]]) if len(ok) else -1.0


def confidence_bins(
    z: npt.NDArray[np.float64], p: npt.NDArray[np.float64], *, fdr: bool
) -> npt.NDArray[np.int_]:
    """+3/-3 (99 %), ±2 (95 %), ±1 (90 %), 0: the highest confidence at which the cell is
    significant, signed as its z-score; with `fdr` each level's p threshold is the
    Benjamini-Hochberg one for that level."""
    bins = np.zeros(len(z), dtype=np.int_)
    for level, alpha in reversed(LEVELS):  # 90 %, then 95 %, then 99 % overwrites
        cut = bh_threshold(p, alpha) if fdr else alpha
        bins[~np.isnan(p) & (p <= cut)] = level
    return (bins * np.sign(np.nan_to_num(z))).astype(np.int_)
