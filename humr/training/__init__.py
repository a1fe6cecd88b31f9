"""humr.training: the training loop, below the experiment layer (:mod:`humr.experiment`).

- :mod:`~humr.training.objective`: the losses of Eq. 7 with the joint rules of Sec. 4.5.
- :mod:`~humr.training.module`: the LightningModule (one step = the objective; AdamW).
- :mod:`~humr.training.schedule`, :mod:`~humr.training.precision`: learning-rate schedule,
  precision ``"auto"``.
- :mod:`~humr.training.validation`: the periodic validation callback (the evaluation it runs is
  passed in, so nothing here imports the experiment layer).
- :mod:`~humr.training.checkpoint`: the one checkpoint loader, used by training, evaluation and
  :mod:`humr.inference`.

The names below load their module on first use (``module`` pulls in Lightning).
"""

from humr._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(
        [
            "LossTerms",
            "training_losses",
            "regression_losses",
            "flow_nll",
            "hypothesis_terms",
            "weighted_total",
            "mask_loss_arguments",
            "select_mmd_targets",
            "invisible_joints",
            "draw_sample_indices",
        ],
        ".objective",
    ),
    "HumrLightning": ".module",
    **dict.fromkeys(["lr_factor", "build_scheduler"], ".schedule"),
    "resolve_precision": ".precision",
    **dict.fromkeys(["PeriodicValidation", "format_validation_line"], ".validation"),
    **dict.fromkeys(
        ["load_checkpoint", "read_checkpoint", "checkpoint_config", "build_model"], ".checkpoint"
    ),
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
