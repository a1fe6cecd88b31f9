"""Data sets mixed with given ratios through a fixed-length index map, no sampler needed.

Each epoch of ``length`` items holds exactly ``round(length * w_d / sum(w))`` items of data set
``d`` (largest remainders), each a stratified random item of it. Because the ratios live in the
data set's index map, a plain shuffling ``DataLoader`` mixes them.

Example:
    >>> mixture = MixtureDataset([list(range(10)), list(range(100, 130))], weights=[1, 1], length=8)
    >>> mixture.counts.tolist()
    [4, 4]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch.utils.data import Dataset

from humr.data.worker_rng import WorkerGenerator

__all__ = ["MixtureDataset"]


class MixtureDataset(WorkerGenerator, Dataset):
    """Data sets mixed with given weights through a fixed-length index map (see the module docstring).

    Item ``i`` belongs to data set ``d = owner[i]`` (``counts[d]`` consecutive slots; a
    shuffling loader mixes them) and is its item ``floor((j + u) * len_d / counts[d])`` for slot
    ``j`` of ``d`` and a fresh ``u ~ U[0, 1)``: every item once per epoch when ``counts[d] =
    len_d``, a random item of each stratum otherwise. ``u`` comes from a per-process generator
    (seeded from ``seed``, torch's per-worker seed and the worker id; never a global reseed).

    Args:
        datasets: the data sets.
        weights: one non-negative weight per data set (None: their lengths, the concatenation).
        length: items per epoch (default: the total length).
        seed: seed of the stratum draws.
    """

    def __init__(
        self,
        datasets: Sequence[Dataset],
        weights: Sequence[float] | None = None,
        length: int | None = None,
        seed: int = 0,
    ) -> None:
        self.datasets = list(datasets)
        self.lengths = np.array([len(d) for d in self.datasets], np.int64)
        if not self.datasets:
            raise ValueError("datasets: expected at least one data set, found none")
        w = self.lengths.astype(np.float64) if weights is None else np.asarray(weights, np.float64)
        if w.shape != self.lengths.shape or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise ValueError(
                f"weights: expected {len(self.datasets)} non-negative finite weights, "
                f"positive sum, found {list(np.atleast_1d(w))}"
            )
        if ((w > 0) & (self.lengths == 0)).any():
            raise ValueError(
                f"weights: an empty data set has a positive weight "
                f"(lengths {self.lengths.tolist()}, weights {w.tolist()})"
            )
        self.length = int(self.lengths.sum() if length is None else length)
        if self.length < 1:
            raise ValueError(f"length: expected >= 1 items per epoch, found {self.length}")
        self.weights = w / w.sum()
        self.counts = _apportion(self.weights, self.length)
        self._starts = np.concatenate([[0], np.cumsum(self.counts)])
        self.seed = int(seed)

    def __len__(self) -> int:
        return self.length

    def locate(self, i: int, u: float) -> tuple[int, int]:
        """``(data set, item)`` of index ``i`` for the stratum position ``u`` in [0, 1)."""
        if not 0 <= i < self.length:
            raise IndexError(f"index {i} out of range [0, {self.length})")
        d = int(np.searchsorted(self._starts, i, side="right") - 1)
        j = i - int(self._starts[d])
        item = min(int((j + u) * self.lengths[d] / self.counts[d]), int(self.lengths[d]) - 1)
        return d, item

    def __getitem__(self, i: int):
        d, item = self.locate(int(i), float(self._generator().random()))
        return self.datasets[d][item]


def _apportion(weights: np.ndarray, total: int) -> np.ndarray:
    """Integer counts summing to ``total``, proportional to ``weights`` (largest remainders)."""
    exact = weights * total
    counts = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return counts
