"""Build the train and test sets a config names (the synthetic set or real data sets)."""

from __future__ import annotations

from dataclasses import fields

from torch.utils.data import Dataset

from humr.config import DataConfig

__all__ = [
    "SYNTHETIC",
    "check_data_config",
    "check_body",
    "build_datasets",
    "build_validation_set",
    "synthetic_config",
]

SYNTHETIC = "synthetic"


def check_data_config(config: DataConfig) -> None:
    """What the data config's own fields cannot tell (:class:`~humr.config.DataConfig` checks those):
    the synthetic set's own limits, or the real data sets' names and files."""
    if config.dataset == SYNTHETIC:
        synthetic_config(config)  # SyntheticConfig checks its sizes
        return
    from humr.experiment.real_data import check_real_data_config

    check_real_data_config(config)


def check_body(config: DataConfig, body: str) -> None:
    """The synthetic set is made of Anny bodies: its ground truth is in no other body's parameters.

    (Real training sets need SMPL-X: :func:`humr.experiment.real_data.build_real_datasets`.)
    """
    if config.dataset == SYNTHETIC and body != "anny":
        raise ValueError(f"body: the synthetic set is made of Anny bodies; use --body anny, found {body!r}")


def synthetic_config(config: DataConfig):
    """The :class:`~humr.data.synthetic.SyntheticConfig` of a data config (defaults elsewhere)."""
    from humr.data.synthetic import SyntheticConfig

    names = {f.name for f in fields(SyntheticConfig)}
    chosen = {
        "num_train": config.num_train,
        "num_test": config.num_test,
        "num_val": config.num_val,
        "seed": config.seed,
        "image_size": config.image_size,
    }
    return SyntheticConfig(**{k: v for k, v in chosen.items() if k in names})


def build_datasets(config: DataConfig, body: str, test_focal: str = "estimate") -> tuple[Dataset, Dataset]:
    """``(train, test)`` data sets of the :mod:`humr.data.fields` contract.

    ``test_focal`` (``eval.test_focal``): the real test set's focal length, ``"estimate"`` or
    ``"annotated"`` (see :mod:`humr.experiment.real_data`); the synthetic set's is always known.
    """
    if config.dataset == SYNTHETIC:
        check_body(config, body)
        from humr.data.synthetic import SyntheticDataset

        synth = synthetic_config(config)
        return (
            SyntheticDataset("train", synth, root=config.root),
            SyntheticDataset("test", synth, root=config.root),
        )
    from humr.experiment.real_data import build_real_datasets

    return build_real_datasets(config, body, test_focal=test_focal)


def build_validation_set(config: DataConfig, body: str) -> Dataset:
    """The held-out set that :class:`~humr.training.validation.PeriodicValidation` monitors.

    The synthetic set has its own validation split (``data.num_val`` frames, seeded apart from
    train and test). The real training sets have none in the reference setup, which validates on
    the test set; humr does the same there (its first ``train.val_images`` images) and the curve
    is for watching convergence, never for choosing settings.
    """
    if config.dataset == SYNTHETIC:
        from humr.data.synthetic import SyntheticDataset

        if config.num_val < 1:
            raise ValueError("data.num_val: validation during training needs a validation split, found 0 "
                             "frames (set data.num_val > 0 or train.val_every 0)")
        return SyntheticDataset("val", synthetic_config(config), root=config.root)
    return build_datasets(config, body)[1]
