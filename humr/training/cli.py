"""Command-line overrides for every config field: ``--loss.mmd_weight 0`` and friends.

Each leaf field of :class:`~humr.config.ExperimentConfig` becomes an option named by
its dotted path; ``--help`` lists them with their defaults. A few short aliases cover what
people type most: ``--data``, ``--body``, ``--body-model-dir``, ``--steps``,
``--accelerator``, ``--devices``, ``--num-nodes``, ``--output-dir``, ``--resume``.
"""

from __future__ import annotations

import argparse
import types
import typing
from dataclasses import fields, is_dataclass
from typing import Any

from humr.config import ExperimentConfig, override

__all__ = ["build_parser", "parse_config"]

ALIASES = {
    "--data": "data.dataset",
    "--body-model-dir": "body_model_path",
    "--steps": "train.max_steps",
    "--accelerator": "train.accelerator",
    "--devices": "train.devices",
    "--num-nodes": "train.num_nodes",
    "--output-dir": "train.output_dir",
    "--resume": "train.resume",
}


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, found {text!r}")


def _converter(hint: Any):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        conv = _converter(inner[0])

        def optional(text: str):
            return None if text.lower() in {"none", "null", ""} else conv(text)

        return optional
    if origin is tuple:
        elem = _converter(args[0])
        return lambda text: tuple(elem(t) for t in text.split(",") if t.strip())
    if hint is bool:
        return _parse_bool
    return hint


def _leaves(cls: type, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        hint = hints[f.name]
        if is_dataclass(hint):
            yield from _leaves(hint, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", hint


def _get(config: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


def build_parser(defaults: ExperimentConfig, description: str = "") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--config", default=None, help="a config.json to start from (e.g. a run's saved config)"
    )
    for alias, dotted in ALIASES.items():
        parser.add_argument(
            alias,
            dest=dotted,
            default=argparse.SUPPRESS,
            help=f"alias of --{dotted}",
            type=_converter(dict(_leaves(ExperimentConfig))[dotted]),
        )
    for dotted, hint in _leaves(ExperimentConfig):
        parser.add_argument(
            f"--{dotted}",
            dest=dotted,
            type=_converter(hint),
            default=argparse.SUPPRESS,
            metavar=getattr(hint, "__name__", str(hint)).upper(),
            help=f"(default: {_get(defaults, dotted)!r})",
        )
    return parser


def parse_config(
    defaults: ExperimentConfig,
    argv: list[str] | None = None,
    description: str = "",
) -> ExperimentConfig:
    """Parse ``argv`` into ``defaults`` with the given overrides (a ``--config`` file first)."""
    from humr.config import load_config

    parser = build_parser(defaults, description)
    namespace = vars(parser.parse_args(argv))
    config_path = namespace.pop("config", None)
    config = load_config(config_path) if config_path else defaults
    return override(config, namespace)
