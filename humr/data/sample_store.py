"""Stores of precomputed per-item arrays: heatmap samples (Sec. 4.5) and cached image features.

Two layouts are read:

* **Reference layout** (the published implementation's ``data/heatmap_samples``): one gzip
  file per annotation row, ``<root>/<data set>/<row:07d>.npy.gz``, holding a ``.npy`` array
  ``(N, 17, 4)``: N = 150 samples (first axis; the reference shuffles along it and keeps the
  first 150), 17 COCO joints, channels ``(x, y, confidence, mask distance)``. ``x, y`` are
  full-image pixels; ``confidence`` is the heatmap value of the sampled cell (its maximum over
  the samples is the joint's max confidence); the mask distance is in pixels of the
  unaugmented ``224 x 224`` crop of the ground-truth box (the reference treats
  ``<= 0.71`` px, half a pixel diagonal, as inside the mask).
* **humr layout** (written by ``recipes/precompute_heatmaps.py``): per data set a directory
  with one memory-mapped ``.npy`` array per quantity plus ``manifest.json`` and a ``done``
  bitmap. Samples are ``(num_rows, 17, M, 4)`` float32 with channels ``(x, y, confidence,
  mask distance)``, ``x, y`` and the mask distance in full-image pixels (distance NaN where no
  mask is known), so any crop box converts them by one scale and shift.

:class:`ArrayStore` is the generic part: a fixed-shape ``.npy`` per array opened with
``mmap_mode`` (a data loader reads single rows without loading the file), written in any
order and resumable: data are flushed before the ``done`` bitmap marks rows complete, so an
interrupted writer loses at most the rows written since the last flush and never marks a row
it has not stored.

Example:
    >>> import tempfile, numpy as np
    >>> root = tempfile.mkdtemp()
    >>> w = ArrayStore.create(root, {"features": ((720,), "float32")}, num_rows=3)
    >>> w.write([2], features=np.ones((1, 720), np.float32)); w.flush()
    >>> ArrayStore.open(root).missing().tolist()
    [0, 1]
"""

from __future__ import annotations

import gzip
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "REFERENCE_MASK_CROP",
    "REFERENCE_INSIDE_PX",
    "ArrayStore",
    "reference_sample_path",
    "read_reference_samples",
    "write_reference_samples",
    "ReferenceSampleStore",
    "HeatmapSampleStore",
    "HeatmapSamples",
]

#: Resolution of the crop in whose pixels the reference stores mask distances.
REFERENCE_MASK_CROP = 224
#: Reference distances at or below this (pixels) count as inside the mask (sqrt(0.5^2 + 0.5^2)).
REFERENCE_INSIDE_PX = 0.71

_FORMAT = "humr-array-store"
_VERSION = 1


class ArrayStore:
    """A directory of fixed-shape, memory-mapped ``.npy`` arrays indexed by row, with a manifest.

    Files: ``manifest.json`` (format, version, ``num_rows``, per-array shape and dtype, free
    ``meta``), ``<name>.npy`` per array ``(num_rows, *shape)`` and ``done.npy`` ``(num_rows,)``
    uint8. Objects pickle without their open maps (they reopen lazily), so a store can be
    handed to data-loader workers.
    """

    def __init__(self, root: str | Path, mode: str = "r") -> None:
        self.root = Path(root)
        self.mode = mode
        manifest = self.root / "manifest.json"
        if not manifest.is_file():
            raise FileNotFoundError(
                f"array store: no manifest.json in {self.root} (looked for {manifest}); stores are "
                "written by recipes/precompute_heatmaps.py or recipes/precompute_features.py"
            )
        try:
            self.manifest = json.loads(manifest.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{manifest}: not valid JSON ({err})") from err
        if self.manifest.get("format") != _FORMAT:
            raise ValueError(
                f"{manifest}: expected format {_FORMAT!r}, found {self.manifest.get('format')!r}"
            )
        self.num_rows = int(self.manifest["num_rows"])
        self.arrays: dict[str, tuple[tuple[int, ...], str]] = {
            k: (tuple(v["shape"]), v["dtype"]) for k, v in self.manifest["arrays"].items()
        }
        self._maps: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(
        cls,
        root: str | Path,
        arrays: Mapping[str, tuple[Sequence[int], str]],
        num_rows: int,
        meta: Mapping | None = None,
        fill: float = np.nan,
    ) -> ArrayStore:
        """Create (or reopen for resuming) a store; an existing one must have the same layout.

        Args:
            root: the store's directory (created).
            arrays: name -> (per-row shape, numpy dtype name).
            num_rows: number of rows (annotation rows of the data set).
            meta: JSON-serialisable description (units, source, ...), written to the manifest.
            fill: initial value of float arrays (NaN marks never-written rows).
        """
        if num_rows < 0:
            raise ValueError(f"num_rows: expected >= 0, found {num_rows}")
        root = Path(root)
        spec = {
            k: {"shape": [int(s) for s in shape], "dtype": np.dtype(dtype).name}
            for k, (shape, dtype) in arrays.items()
        }
        if "done" in spec:
            raise ValueError("arrays: 'done' is reserved for the completion bitmap")
        manifest = {
            "format": _FORMAT,
            "version": _VERSION,
            "num_rows": int(num_rows),
            "arrays": spec,
            "meta": dict(meta or {}),
        }
        if (root / "manifest.json").is_file():
            store = cls(root, mode="r+")
            found = {k: store.manifest[k] for k in ("num_rows", "arrays")}
            if found != {"num_rows": manifest["num_rows"], "arrays": spec}:
                raise ValueError(
                    f"{root / 'manifest.json'}: an existing store with a different layout "
                    f"(found {found}, expected num_rows={num_rows}, arrays={spec}); "
                    "remove it or write elsewhere"
                )
            return store
        root.mkdir(parents=True, exist_ok=True)
        for name, (shape, dtype) in arrays.items():
            arr = np.lib.format.open_memmap(
                root / f"{name}.npy", mode="w+", dtype=np.dtype(dtype), shape=(num_rows, *shape)
            )
            if np.issubdtype(arr.dtype, np.floating):
                arr[...] = fill
            arr.flush()
            del arr
        done = np.lib.format.open_memmap(root / "done.npy", mode="w+", dtype=np.uint8, shape=(num_rows,))
        done.flush()
        del done
        # The manifest goes last: its presence means every file exists with the right shape.
        tmp = root / "manifest.json.tmp"
        tmp.write_text(json.dumps(manifest, indent=1))
        os.replace(tmp, root / "manifest.json")
        return cls(root, mode="r+")

    @classmethod
    def open(cls, root: str | Path) -> ArrayStore:
        """Open an existing store read-only."""
        return cls(root, mode="r")

    # ------------------------------------------------------------------ access
    def _map(self, name: str) -> np.ndarray:
        if name not in self._maps:
            if name != "done" and name not in self.arrays:
                raise KeyError(f"array store {self.root}: no array {name!r}; it holds {sorted(self.arrays)}")
            path = self.root / f"{name}.npy"
            if not path.is_file():
                raise FileNotFoundError(f"array store {self.root}: missing {path} listed in its manifest")
            self._maps[name] = np.load(path, mmap_mode=self.mode)
        return self._maps[name]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_maps"] = {}
        return state

    @property
    def meta(self) -> dict:
        return self.manifest.get("meta", {})

    def done(self) -> np.ndarray:
        """``(num_rows,)`` bool: rows completely written."""
        return np.asarray(self._map("done")).astype(bool)

    def missing(self) -> np.ndarray:
        """Indices of rows not yet written, ascending."""
        return np.flatnonzero(~self.done())

    def read(self, name: str, row: int, check_done: bool = True) -> np.ndarray:
        """One row of array ``name`` ``(*shape)`` (a copy, read from the memory map)."""
        if not 0 <= row < self.num_rows:
            raise IndexError(f"array store {self.root}: row {row} out of range [0, {self.num_rows})")
        if check_done and not self._map("done")[row]:
            raise ValueError(
                f"array store {self.root}: row {row} was never written (an interrupted "
                "precompute? rerun it to resume)"
            )
        return np.array(self._map(name)[row])

    # ------------------------------------------------------------------ writing
    def write(self, rows: Iterable[int], **values: np.ndarray) -> None:
        """Write ``values[name] (len(rows), *shape)`` for every array; rows are done after :meth:`flush`."""
        if self.mode == "r":
            raise ValueError(f"array store {self.root}: opened read-only")
        rows = np.asarray(list(rows), dtype=np.int64)
        if set(values) != set(self.arrays):
            raise ValueError(f"values: expected arrays {sorted(self.arrays)}, found {sorted(values)}")
        if rows.size and (rows.min() < 0 or rows.max() >= self.num_rows):
            raise ValueError(
                f"rows: expected indices in [0, {self.num_rows}), found {rows.min()}..{rows.max()}"
            )
        for name, value in values.items():
            shape, _dtype = self.arrays[name]
            value = np.asarray(value)
            if value.shape != (len(rows), *shape):
                raise ValueError(
                    f"values[{name!r}]: expected shape {(len(rows), *shape)}, found {value.shape}"
                )
            self._map(name)[rows] = value
        self._pending = np.concatenate([getattr(self, "_pending", np.zeros(0, np.int64)), rows])

    def flush(self) -> None:
        """Flush the data to disk, then mark the rows written since the last flush as done."""
        pending = getattr(self, "_pending", np.zeros(0, np.int64))
        for name in self.arrays:
            if name in self._maps:
                self._maps[name].flush()
        if pending.size:
            done = self._map("done")
            done[pending] = 1
            done.flush()
        self._pending = np.zeros(0, np.int64)


# ---------------------------------------------------------------------------- reference layout


def reference_sample_path(root: str | Path, dataset: str, row: int) -> Path:
    """``<root>/<dataset>/<row:07d>.npy.gz`` (the reference's heatmap-sample file of one row)."""
    return Path(root) / dataset / f"{int(row):07d}.npy.gz"


def read_reference_samples(path: str | Path) -> np.ndarray:
    """Read one reference file -> ``(N, 17, 4)`` float32 ``(x, y, confidence, mask distance)``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"heatmap samples: {path} not found; the reference implementation's precomputed samples "
            "(data/heatmap_samples/<data set>/<row:07d>.npy.gz) come from its data release, humr's "
            "own from recipes/precompute_heatmaps.py"
        )
    try:
        with gzip.open(path, "rb") as f:
            arr = np.load(io.BytesIO(f.read()), allow_pickle=False)
    except (OSError, EOFError, ValueError) as err:
        raise ValueError(f"heatmap samples: cannot read {path} ({err})") from err
    if arr.ndim != 3 or arr.shape[1:] != (17, 4):
        raise ValueError(f"heatmap samples: {path} expected shape (N, 17, 4), found {arr.shape}")
    return arr.astype(np.float32, copy=False)


def write_reference_samples(path: str | Path, samples: np.ndarray) -> None:
    """Write ``samples (N, 17, 4)`` as one gzip-compressed ``.npy`` file (the reference layout)."""
    samples = np.asarray(samples)
    if samples.ndim != 3 or samples.shape[1:] != (17, 4):
        raise ValueError(f"samples: expected shape (N, 17, 4), found {samples.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.save(buf, samples)
    with gzip.open(path, "wb") as f:
        f.write(buf.getvalue())


class HeatmapSamples:
    """Heatmap samples of one row in humr's units.

    Attributes:
        xy: ``(17, M, 2)`` full-image pixels.
        confidence: ``(17, M)`` heatmap value of each sample's cell.
        mask_distance: ``(17, M)`` distance to the person mask in full-image pixels (NaN: unknown).
    """

    __slots__ = ("xy", "confidence", "mask_distance")

    def __init__(self, xy: np.ndarray, confidence: np.ndarray, mask_distance: np.ndarray) -> None:
        self.xy, self.confidence, self.mask_distance = xy, confidence, mask_distance


class ReferenceSampleStore:
    """Read-only access to the reference layout ``<root>/<dataset>/<row:07d>.npy.gz``.

    Args:
        root: the reference's ``data/heatmap_samples`` directory.
        dataset: the data set's sub-directory name (the reference's data-set key, e.g.
            ``"agora-bfh"``, ``"static-hdri"``, ``"3dpw-train-smplx"``).
    """

    def __init__(self, root: str | Path, dataset: str) -> None:
        self.root, self.dataset = Path(root), dataset
        if not (self.root / dataset).is_dir():
            raise FileNotFoundError(
                f"heatmap samples: directory {self.root / dataset} not found (reference "
                "layout <root>/<data set>/<row:07d>.npy.gz)"
            )

    def __call__(self, row: int, box_size: float) -> HeatmapSamples:
        """Samples of annotation row ``row``; ``box_size`` (pixels) is the row's unaugmented box side,
        used to turn the reference's 224-crop pixel distances into full-image pixels."""
        arr = read_reference_samples(reference_sample_path(self.root, self.dataset, row))
        arr = arr.transpose(1, 0, 2)  # (17, N, 4)
        dist_px = arr[..., 3] * (box_size / REFERENCE_MASK_CROP)
        # Distances within half a pixel diagonal are "inside" in the reference: make them exactly 0.
        dist_px = np.where(arr[..., 3] <= REFERENCE_INSIDE_PX, 0.0, dist_px).astype(np.float32)
        return HeatmapSamples(arr[..., :2].copy(), arr[..., 2].copy(), dist_px)


class HeatmapSampleStore:
    """humr's heatmap-sample store (see the module docstring), read through :class:`ArrayStore`.

    Arrays: ``samples (17, M, 4)`` and ``keypoints (17, 3)`` (the highest-likelihood pose
    ``x, y, confidence`` in full-image pixels) per row.
    """

    def __init__(self, root: str | Path) -> None:
        self.store = ArrayStore.open(root)
        if "samples" not in self.store.arrays:
            raise ValueError(
                f"heatmap samples: store {root} holds no 'samples' array "
                f"(it holds {sorted(self.store.arrays)})"
            )

    @property
    def num_samples(self) -> int:
        return self.store.arrays["samples"][0][1]

    def __call__(self, row: int, box_size: float | None = None) -> HeatmapSamples:
        arr = self.store.read("samples", row)  # (17, M, 4)
        return HeatmapSamples(arr[..., :2].copy(), arr[..., 2].copy(), arr[..., 3].copy())

    def keypoints(self, row: int) -> np.ndarray:
        """``(17, 3)`` highest-likelihood detector pose of ``row`` (x, y full-image pixels, confidence)."""
        return self.store.read("keypoints", row)

    @staticmethod
    def create(
        root: str | Path, num_rows: int, num_samples: int = 150, meta: Mapping | None = None
    ) -> ArrayStore:
        """Create (or reopen to resume) a writable heatmap-sample store."""
        meta = {
            "kind": "heatmap_samples",
            "channels": ["x", "y", "confidence", "mask_distance"],
            "units": "full-image pixels (mask distance NaN where unknown)",
            **dict(meta or {}),
        }
        return ArrayStore.create(
            root,
            {"samples": ((17, num_samples, 4), "float32"), "keypoints": ((17, 3), "float32")},
            num_rows,
            meta=meta,
        )
