"""humr.eval: distribution metrics (pure functions), their accumulation over a data set, pictures.

- :mod:`humr.eval.metrics`: accuracy (MPJPE, PA-MPJPE, PVE, best-of-N), consistency (2DKP),
  diversity (3D spread) and plausibility (PercIn, MinDist), paper Sec. 5.1.
- :mod:`humr.eval.accumulator`: :class:`MetricAccumulator` and :func:`format_table`
  (Tables 1 and 2).
- :mod:`humr.eval.uncertainty`: per-joint / per-vertex spread (``Hypotheses.joint_spread`` etc.).
- :mod:`humr.eval.calibration`: Spearman correlation of spread and error, coverage curves.
- :mod:`humr.eval.select`: one hypothesis per image chosen without ground truth.
- :mod:`humr.eval.plots` (needs matplotlib, the ``plots`` extra) and :mod:`humr.eval.render`
  (orthographic views through the rasterizer of :mod:`humr.data.render`): pictures of
  hypotheses. Imported on demand, not here.
"""

from humr.eval.accumulator import TABLE_COLUMNS, MetricAccumulator, format_table
from humr.eval.metrics import (
    PROTOCOLS,
    Protocol,
    SumCount,
    keypoint_2d_error,
    keypoint_2d_error_sums,
    mask_plausibility,
    mask_plausibility_sums,
    min_of_n,
    mode_and_best,
    mpjpe,
    pa_mpjpe,
    pve,
    root_point,
    sample_spread,
    sample_spread_sums,
    visible_from_confidence,
)

__all__ = [
    "MetricAccumulator",
    "format_table",
    "TABLE_COLUMNS",
    "PROTOCOLS",
    "Protocol",
    "SumCount",
    "root_point",
    "mpjpe",
    "pa_mpjpe",
    "pve",
    "mode_and_best",
    "min_of_n",
    "visible_from_confidence",
    "keypoint_2d_error",
    "keypoint_2d_error_sums",
    "sample_spread",
    "sample_spread_sums",
    "mask_plausibility",
    "mask_plausibility_sums",
]
