"""One numpy generator per ``DataLoader`` worker, for data sets that draw while reading.

A data set copied into worker processes must not give every worker the same draws, and must
never reseed a global generator. :class:`WorkerGenerator` derives each process's generator from
the data set's ``seed``, torch's per-process seed (which ``DataLoader`` sets per worker and per
epoch; reading it changes nothing) and the worker id, creates it lazily in the process that
draws, and drops it when the data set is pickled to a worker.

Example:
    >>> class Noise(WorkerGenerator):
    ...     def __init__(self, seed: int) -> None:
    ...         self.seed = seed
    >>> noise = Noise(0)
    >>> noise._generator() is noise._generator()   # made once per process
    True
    >>> noise.__getstate__()["_rng"] is None   # what a worker receives: it makes its own
    True
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["WorkerGenerator"]


class WorkerGenerator:
    """Mixin giving ``self._generator()``: this process's ``numpy.random.Generator``.

    The class sets ``self.seed`` (an int); the generator is made on first use from ``[seed,
    torch.initial_seed() % 2**63, worker id + 1]`` (worker id -1 in the main process).
    """

    seed: int
    _rng: np.random.Generator | None = None

    def _generator(self) -> np.random.Generator:
        if self._rng is None:
            info = torch.utils.data.get_worker_info()
            worker = info.id if info is not None else -1
            self._rng = np.random.default_rng([self.seed, torch.initial_seed() % 2**63, worker + 1])
        return self._rng

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_rng"] = None  # each worker makes its own
        return state
