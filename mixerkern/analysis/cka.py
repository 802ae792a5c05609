"""Centered kernel alignment (CKA) between representations, in torch with float64 accumulation.

For representations X (n, p) and Y (n, q) of the same n examples, with Gram matrices K and L,

    CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))

(Kornblith et al. 2019, "Similarity of Neural Network Representations Revisited"). Two HSIC
estimators are offered:

* biased (default): ``HSIC_0 = tr(K H L H) / (n - 1)^2``, H = I - 11^T/n the centering matrix
  (Gretton et al. 2005). This is Kornblith et al.'s CKA.
* unbiased: Song et al. 2012 ("Feature Selection via Dependence Maximization", eq. 5), with
  K~, L~ being K, L with their diagonals zeroed,

      HSIC_1 = [tr(K~ L~) + 1^T K~ 1 1^T L~ 1 / ((n-1)(n-2)) - 2/(n-2) 1^T K~ L~ 1] / (n (n-3)).

  It is a U-statistic, so averaging it over minibatches estimates the same population value as
  the whole sample does; :class:`MinibatchCKA` does this (Nguyen, Raghu & Kornblith 2021, "Do Wide
  and Deep Networks Learn the Same Things?"). Unbiased CKA can fall slightly outside [0, 1].

Kernels: linear, K = X X^T, and RBF, ``K_ij = exp(-||x_i - x_j||^2 / (2 sigma^2))`` with, unless
given, ``sigma = threshold * median_{i<j} ||x_i - x_j||`` (Kornblith et al.'s median heuristic;
their reference code takes the median over all n^2 entries, zero diagonal included, which comes out
slightly lower for small n). Inputs of shape (n, ...) are flattened to (n, features). A CKA whose
denominator is not positive (a representation constant across the examples) is NaN.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal, Union

import numpy as np
import torch

Kind = Literal["linear", "kernel"]
KINDS: tuple[str, ...] = ("linear", "kernel")
TensorLike = Union[torch.Tensor, np.ndarray]  # typing.Union: aliases are evaluated, and 3.9 is supported


def _features(name: str, x: TensorLike, min_examples: int = 2) -> torch.Tensor:
    """``x`` as centred float64 features (n, features). Centering changes neither estimator, but it
    removes the large common offset that would otherwise cancel catastrophically in the Gram matrix."""
    x = torch.as_tensor(x)
    if x.dim() == 0 or x.is_complex():
        raise ValueError(f"{name} must be a real tensor of shape (n, ...), got {x.dtype} {tuple(x.shape)}")
    if x.shape[0] < min_examples:
        raise ValueError(f"{name} must hold at least {min_examples} examples for this estimator "
                         f"(n >= 4 for the unbiased one), got shape {tuple(x.shape)}")
    x = x.reshape(x.shape[0], -1).to(torch.float64)
    if x.shape[1] == 0:
        raise ValueError(f"{name} has no features, shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x - x.mean(0, keepdim=True)


def _pair(x: TensorLike, y: TensorLike, unbiased: bool) -> tuple[torch.Tensor, torch.Tensor]:
    need = 4 if unbiased else 2
    x, y = _features("X", x, need), _features("Y", y, need)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"X and Y must have the same number of examples (first dimension), got X with "
                         f"{x.shape[0]} and Y with {y.shape[0]}")
    if x.device != y.device:
        raise ValueError(f"X and Y must be on the same device, got {x.device} and {y.device}")
    return x, y


def gram_linear(x: TensorLike) -> torch.Tensor:
    """K = X X^T (n, n) in float64, X centred first (which leaves the centred K unchanged)."""
    x = _features("x", x)
    return x @ x.T


def _sq_distances(x: torch.Tensor) -> torch.Tensor:
    # ||xi - xj||^2 = |xi|^2 + |xj|^2 - 2 xi.xj; rounding can leave tiny negatives, and the exact zeros
    # of the diagonal are restored.
    g = x @ x.T
    sq = g.diagonal()
    d2 = (sq[:, None] + sq[None, :] - 2 * g).clamp_min_(0)
    return d2.fill_diagonal_(0)


def _median_pair(d2: torch.Tensor) -> torch.Tensor:
    n = d2.shape[0]
    i, j = torch.triu_indices(n, n, offset=1, device=d2.device)
    dist = d2[i, j].sqrt().sort().values
    m = dist.numel()
    return (dist[(m - 1) // 2] + dist[m // 2]) / 2


def median_distance(x: TensorLike) -> float:
    """Median Euclidean distance over the n (n - 1) / 2 pairs of distinct examples of x (n, ...), as
    numpy.median: the mean of the two middle values for an even count."""
    return float(_median_pair(_sq_distances(_features("x", x))))


def _rbf(name: str, x: torch.Tensor, sigma: float | None, threshold: float) -> torch.Tensor:
    d2 = _sq_distances(x)
    if sigma is None:
        if not threshold > 0:
            raise ValueError(f"threshold must be > 0, got {threshold}")
        sigma = threshold * _median_pair(d2)
        if not sigma > 0:
            raise ValueError(f"{name}: the median distance between examples is 0 (at least half the pairs are "
                             f"identical), so the median heuristic gives no bandwidth; pass sigma")
    elif not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    return torch.exp(d2 / (-2 * sigma ** 2))


def gram_rbf(x: TensorLike, sigma: float | None = None, threshold: float = 1.0) -> torch.Tensor:
    """RBF Gram matrix (n, n) of x (n, ...): ``exp(-||xi - xj||^2 / (2 sigma^2))``, sigma = threshold *
    median pairwise distance when not given (then invariant to rotations and isotropic scaling of x)."""
    return _rbf("x", _features("x", x), sigma, threshold)


def center_gram(k: torch.Tensor, unbiased: bool = False) -> torch.Tensor:
    """H K H (biased) or the U-centred K (unbiased), in float64.

    U-centering (Szekely & Rizzo 2014): with K~ = K with a zero diagonal, r_i its row sums and s its
    total, U_ij = K~_ij - (r_i + r_j)/(n-2) + s/((n-1)(n-2)) off the diagonal and 0 on it. Then
    <U(K), U(L)>_F / (n(n-3)) is exactly Song et al.'s HSIC_1, so one matrix product of flattened
    U-centred Grams gives HSIC_1 for every pair of layers.
    """
    k = torch.as_tensor(k)
    if k.dim() != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"k must be a square (n, n) Gram matrix, got shape {tuple(k.shape)}")
    n = k.shape[0]
    k = k.to(torch.float64)
    if not unbiased:
        k = k - k.mean(0, keepdim=True)
        return k - k.mean(1, keepdim=True)
    if n < 4:
        raise ValueError(f"the unbiased HSIC estimator needs n >= 4 examples, got a ({n}, {n}) Gram matrix")
    k = k.clone().fill_diagonal_(0)
    rows = k.sum(1) / (n - 2)
    u = k - rows[:, None] - rows[None, :] + k.sum() / ((n - 1) * (n - 2))
    return u.fill_diagonal_(0)


def _hsic_scale(n: int, unbiased: bool) -> float:
    return 1.0 / (n * (n - 3)) if unbiased else 1.0 / (n - 1) ** 2


def hsic(k: torch.Tensor, l: torch.Tensor, unbiased: bool = False) -> torch.Tensor:
    """HSIC_0 (biased) or HSIC_1 (unbiased) of two (n, n) Gram matrices, a float64 scalar tensor."""
    k, l = torch.as_tensor(k), torch.as_tensor(l)
    if k.shape != l.shape:
        raise ValueError(f"k and l must be Gram matrices of the same n, got {tuple(k.shape)} and {tuple(l.shape)}")
    kc, lc = center_gram(k, unbiased), center_gram(l, unbiased)
    return (kc * lc).sum() * _hsic_scale(k.shape[0], unbiased)


def _ratio(xy: torch.Tensor, xx: torch.Tensor, yy: torch.Tensor) -> float:
    den = xx * yy
    return float(xy / den.sqrt()) if den > 0 else math.nan


def cka_from_grams(k: torch.Tensor, l: torch.Tensor, unbiased: bool = False) -> float:
    """CKA of two (n, n) Gram matrices."""
    return _ratio(hsic(k, l, unbiased), hsic(k, k, unbiased), hsic(l, l, unbiased))


def _linear_hsic_features(x: torch.Tensor, y: torch.Tensor, unbiased: bool) -> torch.Tensor:
    """Linear-kernel HSIC from (p, q) feature cross-products instead of (n, n) Grams: O(n p q), for n > p, q.

    With K = X X^T (X centred), tr(K H L H) = ||X^T Y||_F^2. For HSIC_1, with a_i = |x_i|^2, b_i = |y_i|^2
    and sums s_x = sum_i x_i, s_y: tr(K~ L~) = ||X^T Y||_F^2 - sum_i a_i b_i, 1^T K~ 1 = |s_x|^2 - sum_i a_i,
    1^T K~ L~ 1 = sum_i (x_i.s_x - a_i)(y_i.s_y - b_i).
    """
    n = x.shape[0]
    cross = (x.T @ y).square().sum()
    if not unbiased:
        return cross / (n - 1) ** 2
    a, b = x.square().sum(1), y.square().sum(1)
    sx, sy = x.sum(0), y.sum(0)
    trace = cross - (a * b).sum()
    ones_k, ones_l = sx.square().sum() - a.sum(), sy.square().sum() - b.sum()
    ones_kl = ((x @ sx - a) * (y @ sy - b)).sum()
    return (trace + ones_k * ones_l / ((n - 1) * (n - 2)) - 2 * ones_kl / (n - 2)) / (n * (n - 3))


def linear_cka(x: TensorLike, y: TensorLike, unbiased: bool = False) -> float:
    """Linear CKA of X (n, ...) and Y (n, ...): ``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` on
    centred features (biased), or the same ratio of HSIC_1 estimates (``unbiased=True``, n >= 4).

    Invariant to orthogonal transforms and isotropic scaling of either input. The (n, n) Grams are
    used when the features outnumber the examples, the feature cross-products otherwise.
    """
    x, y = _pair(x, y, unbiased)
    if x.shape[0] > max(x.shape[1], y.shape[1]):
        return _ratio(*(_linear_hsic_features(a, b, unbiased) for a, b in ((x, y), (x, x), (y, y))))
    return cka_from_grams(x @ x.T, y @ y.T, unbiased)


def kernel_cka(x: TensorLike, y: TensorLike, sigma: float | None = None, threshold: float = 1.0,
               unbiased: bool = False) -> float:
    """RBF-kernel CKA of X (n, ...) and Y (n, ...). ``sigma`` (the same for both) defaults to
    ``threshold`` times each input's own median pairwise distance."""
    x, y = _pair(x, y, unbiased)
    return cka_from_grams(_rbf("X", x, sigma, threshold), _rbf("Y", y, sigma, threshold), unbiased)


Features = Union[Mapping[str, TensorLike], Sequence[TensorLike]]


class MinibatchCKA:
    """CKA between every pair of layers, accumulated over minibatches (Nguyen et al. 2021).

    Each ``update`` takes one minibatch of activations for every layer (all with the same n examples)
    and adds, for every pair (a, b), HSIC(K_a, L_b) estimated on that minibatch alone; ``compute``
    returns ``sum HSIC(K_a, L_b) / sqrt(sum HSIC(K_a, K_a) sum HSIC(L_b, L_b))``. Memory is one
    (n, n) Gram per layer of the current minibatch.

    With ``unbiased=True`` (the default, as in the paper) every term is a U-statistic, so the result
    estimates the population CKA whatever the batch size; the biased HSIC's bias (upward, for
    high-dimensional features) depends on the batch size, and it equals the full-sample CKA only for
    a single batch. For ``kind="kernel"`` each
    layer's sigma is taken per minibatch (median heuristic) unless ``sigma`` is given.

    ``update(xs)`` compares the layers of ``xs`` with each other (a symmetric matrix); ``update(xs, ys)``
    compares the layers of ``xs`` (rows) with those of ``ys`` (columns), e.g. two networks on the same
    images. Layers come as a sequence or a label -> tensor mapping (labels kept in row/col_labels).
    """

    def __init__(self, kind: Kind = "linear", unbiased: bool = True, sigma: float | None = None,
                 threshold: float = 1.0):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if sigma is not None and not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        if not threshold > 0:
            raise ValueError(f"threshold must be > 0, got {threshold}")
        self.kind, self.unbiased, self.sigma, self.threshold = kind, unbiased, sigma, threshold
        self.reset()

    def reset(self) -> None:
        self.row_labels: list[str] | None = None
        self.col_labels: list[str] | None = None
        self.num_batches = 0
        self._cross: torch.Tensor | None = None
        self._self_rows: torch.Tensor | None = None
        self._self_cols: torch.Tensor | None = None
        self._symmetric: bool | None = None

    def _centred(self, name: str, layers: Features, n: int | None) -> tuple[torch.Tensor, list[str] | None, int]:
        """The flattened centred Grams (layers, n^2) of one minibatch."""
        labels = [str(k) for k in layers] if isinstance(layers, Mapping) else None
        tensors = list(layers.values()) if isinstance(layers, Mapping) else list(layers)
        if not tensors:
            raise ValueError(f"{name} must hold at least one layer's activations")
        rows = []
        for i, t in enumerate(tensors):
            label = f"{name}[{labels[i] if labels else i}]"
            x = _features(label, t, 4 if self.unbiased else 2)
            if n is None:
                n = x.shape[0]
            elif x.shape[0] != n:
                raise ValueError(f"every layer of a minibatch must have the same number of examples: {label} "
                                 f"has {x.shape[0]}, expected {n}")
            k = x @ x.T if self.kind == "linear" else _rbf(label, x, self.sigma, self.threshold)
            rows.append(center_gram(k, self.unbiased).flatten())
        return torch.stack(rows), labels, n

    @torch.no_grad()
    def update(self, xs: Features, ys: Features | None = None) -> None:
        cx, row_labels, n = self._centred("xs", xs, None)
        cy, col_labels = (cx, row_labels) if ys is None else self._centred("ys", ys, n)[:2]
        if self.num_batches == 0:
            self.row_labels, self.col_labels, self._symmetric = row_labels, col_labels, ys is None
        elif self._symmetric != (ys is None):
            raise ValueError("update: do not mix update(xs) and update(xs, ys) in one accumulator")
        elif ((len(cx), len(cy)) != tuple(self._cross.shape)
              or (row_labels, col_labels) != (self.row_labels, self.col_labels)):
            raise ValueError(f"update: the layers differ from the earlier minibatches': expected "
                             f"{self.row_labels or len(self._cross)} x {self.col_labels or self._cross.shape[1]}, "
                             f"got {row_labels or len(cx)} x {col_labels or len(cy)}")
        scale = _hsic_scale(n, self.unbiased)
        cross = (cx @ cy.T) * scale
        self_rows = cross.diagonal() if ys is None else cx.square().sum(1) * scale
        self_cols = self_rows if ys is None else cy.square().sum(1) * scale
        if self.num_batches == 0:
            self._cross, self._self_rows, self._self_cols = cross, self_rows.clone(), self_cols.clone()
        else:
            if cross.device != self._cross.device:
                raise ValueError(f"update: activations moved from {self._cross.device} to {cross.device}")
            self._cross += cross
            self._self_rows += self_rows
            self._self_cols += self_cols
        self.num_batches += 1

    def compute(self) -> torch.Tensor:
        """The (rows, cols) float64 CKA matrix on the CPU (NaN where a layer's HSIC sum is not positive)."""
        if self.num_batches == 0:
            raise RuntimeError("MinibatchCKA.compute: no minibatch was added (call update first)")
        den = self._self_rows[:, None] * self._self_cols[None, :]
        out = self._cross / den.clamp_min(torch.finfo(torch.float64).tiny).sqrt()
        return out.masked_fill(den <= 0, math.nan).cpu()


def cka_matrix(layers: Features, kind: Kind = "linear", unbiased: bool = False, sigma: float | None = None,
               threshold: float = 1.0) -> torch.Tensor:
    """CKA between every pair of ``layers`` (each (n, ...)) on the whole sample, as a float64 matrix."""
    acc = MinibatchCKA(kind, unbiased, sigma, threshold)
    acc.update(layers)
    return acc.compute()
