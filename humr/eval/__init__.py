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

from humr.eval import accumulator, metrics
from humr.eval.accumulator import *  # noqa: F403 - the names of accumulator.__all__
from humr.eval.metrics import *  # noqa: F403

# The public names are the submodules' own lists, written once there.
__all__ = [*accumulator.__all__, *metrics.__all__]
