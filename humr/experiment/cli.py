"""Command-line overrides for every config field: ``--loss.mmd_weight 0`` and friends.

Each leaf field of :class:`~humr.config.ExperimentConfig` becomes an option named by
its dotted path; ``--help`` lists them with their defaults. A few short aliases cover what
people type most: ``--data``, ``--body``, ``--body-model-dir``, ``--flow`` (the flow's kind,
``--model.flow.kind``), ``--steps``, ``--accelerator``, ``--devices``, ``--num-nodes``,
``--output-dir``, ``--resume``. Nested sections nest their names: the flow's depth is
``--model.flow.num_layers``.

Names are checked against the config's ``Literal`` types (``--model.flow.kind foo`` answers
"--model.flow.kind: expected one of realnvp, glow, found 'foo'"), and a value the config refuses
(``--loss.mmd_weight nan``) ends the program with argparse's usage error naming the field.
"""

from __future__ import annotations

import argparse
import types
import typing
from dataclasses import fields, is_dataclass
from typing import Any

from humr.config import ExperimentConfig, override

__all__ = ["TINY_FLAG", "SEEDS_FLAG", "ROWS_FLAG", "build_parser", "parse_config"]

#: The recipes' smoke-run flag (:func:`humr.experiment.recipe.tiny`).
TINY_FLAG = "--tiny"
SEEDS_FLAG = "--seeds"
ROWS_FLAG = "--rows"

ALIASES = {
    "--data": "data.dataset",
    "--body-model-dir": "body_model_path",
    "--flow": "model.flow.kind",
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


def _choice(names: tuple[str, ...]):
    def choice(text: str) -> str:
        if text not in names:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(names)}, found {text!r}")
        return text

    return choice


def _converter(hint: Any):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Literal:
        return _choice(args)
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


def _metavar(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return "{" + ",".join(args) + "}"
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_metavar(a) for a in args)
    if hint is type(None):
        return "NONE"
    return getattr(hint, "__name__", str(hint)).upper()


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's line breaks (the recipes' usage examples) and shows defaults."""


def build_parser(
    defaults: ExperimentConfig, description: str = "", tiny: bool = False, seeds: bool = False
) -> argparse.ArgumentParser:
    """The parser of every config field; ``tiny`` adds the recipes' ``--tiny`` flag to it, ``seeds``
    the ablation recipes' ``--seeds``."""
    parser = argparse.ArgumentParser(description=description, formatter_class=_HelpFormatter)
    parser.add_argument(
        "--config", default=None, help="a config.json to start from (e.g. a run's saved config)"
    )
    if tiny:
        parser.add_argument(
            TINY_FLAG,
            action="store_true",
            help="a smoke-test budget that runs end to end in well under a minute "
            "(humr.experiment.recipe.tiny); later flags override it",
        )
    if seeds:
        parser.add_argument(
            SEEDS_FLAG,
            default=None,
            metavar="S1,S2,...",
            help="train every row once per training seed and print mean±std per cell "
            "(humr.experiment.recipe.main_rows); the data stay those of --data.seed",
        )
        parser.add_argument(
            ROWS_FLAG,
            default=None,
            metavar="NAME,...",
            help="train only the rows with these run names (e.g. table3_3,table3_4; all by default)",
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
            metavar=_metavar(hint),
            help=f"(default: {_get(defaults, dotted)!r})",
        )
    return parser


def parse_config(
    defaults: ExperimentConfig,
    argv: list[str] | None = None,
    description: str = "",
    tiny: bool = False,
    seeds: bool = False,
) -> ExperimentConfig:
    """Parse ``argv`` into ``defaults`` with the given overrides (a ``--config`` file first).

    A value the config refuses (``--loss.mmd_weight nan``) ends the program with argparse's
    usage error naming the field, before anything is built or written. ``tiny``: accept (and
    document) ``--tiny``, which the caller has already applied to ``defaults``; ``seeds``: document
    ``--seeds``, which the caller reads itself (:func:`humr.experiment.recipe.parse_seeds`).
    """
    from humr.config import load_config

    parser = build_parser(defaults, description, tiny=tiny, seeds=seeds)
    namespace = vars(parser.parse_args(argv))
    namespace.pop("tiny", None)
    namespace.pop("seeds", None)
    namespace.pop("rows", None)
    config_path = namespace.pop("config", None)
    try:
        config = load_config(config_path) if config_path else defaults
        return override(config, namespace)
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
