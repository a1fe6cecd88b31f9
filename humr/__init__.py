"""humr: probabilistic 3D human mesh recovery.

A normalizing flow over body-joint rotations, conditioned on image features, the
highest-likelihood 2D detector pose and CLIFF bounding-box information, supervised by
the distributions encoded in 2D detector heatmaps (joint-wise MMD) and by person masks.

The layers, bottom up (each imports only the ones before it): :mod:`humr.rotations`,
:mod:`humr.cameras`, :mod:`humr.losses`, :mod:`humr.flows`, :mod:`humr.bodies`,
:mod:`humr.data`, :mod:`humr.eval`, :mod:`humr.model`, :mod:`humr.training`,
:mod:`humr.experiment`; beside them :mod:`humr.config`, :mod:`humr.inference`,
:mod:`humr.fitting`, :mod:`humr.export`, :mod:`humr.ablations` and :mod:`humr.testing`.
The most used names are here too; everything loads on first use.
"""

from humr._lazy import lazy_exports

__version__ = "0.1.0"

_SUBPACKAGES = [
    "rotations",
    "cameras",
    "losses",
    "flows",
    "bodies",
    "data",
    "model",
    "eval",
    "training",
    "experiment",
    "config",
    "inference",
    "fitting",
    "export",
    "ablations",
    "testing",
]
_EXPORTS = {
    **{name: f".{name}" for name in _SUBPACKAGES},
    **dict.fromkeys(["ExperimentConfig", "SYNTHETIC_CPU", "PAPER_FULL", "load_config"], ".config"),
    "build_body": ".bodies",
    "HumrModel": ".model",
    "Hypotheses": ".model",
    **dict.fromkeys(["Predictor", "load_model", "predict_folder"], ".inference"),
    **dict.fromkeys(["FitConfig", "fit_keypoints"], ".fitting"),
    "load_checkpoint": ".training",
}
__all__ = ["__version__", *sorted(_EXPORTS)]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
