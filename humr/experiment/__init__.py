"""humr.experiment: what a run is made of, above the training loop.

- :mod:`~humr.experiment.cli`: command-line overrides of every config field.
- :mod:`~humr.experiment.recipe`: the entry points ``recipes/`` call (train and evaluate one
  config, the ablation rows, evaluate a checkpoint) and the ``--tiny`` budget.
- :mod:`~humr.experiment.run`: train, resume and evaluate a config (interrupts, resume checks).
- :mod:`~humr.experiment.data`, :mod:`~humr.experiment.real_data`: the train, validation and test
  sets a data config names (the synthetic set; BEDLAM / AGORA / 3DPW / EMDB).
- :mod:`~humr.experiment.evaluation`, :mod:`~humr.experiment.evaluation_real`: the evaluation
  loop of Sec. 5.1 and its protocols (the model's own body; SMPL for 3DPW and EMDB).
- :mod:`~humr.experiment.fit_eval`: the fitting table of ``recipes/fit.py``.
- :mod:`~humr.experiment.join`: one table from ablation rows trained in separate processes.

The names below load their module on first use (they pull in Lightning, the data readers and
plotting).
"""

from humr._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(["parse_config", "build_parser"], ".cli"),
    **dict.fromkeys(["main_full", "main_rows", "main_evaluate", "defaults_for", "tiny"], ".recipe"),
    **dict.fromkeys(["train", "run_experiment", "evaluate_experiment", "TrainingInterrupted"], ".run"),
    **dict.fromkeys(["build_datasets", "build_validation_set"], ".data"),
    "build_real_datasets": ".real_data",
    **dict.fromkeys(["evaluate", "EvaluationProtocol", "OwnBodyProtocol"], ".evaluation"),
    **dict.fromkeys(["SMPLProtocol", "evaluate_real"], ".evaluation_real"),
    **dict.fromkeys(["evaluate_fitting", "main_fit"], ".fit_eval"),
    **dict.fromkeys(["join_results", "compare_rows"], ".join"),
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
