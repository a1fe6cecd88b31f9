"""Package exports that load their module on first use.

A package's ``__init__`` lists its public names and the module that defines each; nothing is
imported until a name is read, so ``import humr.training`` stays cheap (no Lightning) and the
packages cannot import one another in a cycle through their ``__init__``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: str, exports: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` exporting ``{name: module}`` on demand.

    ``module`` is relative to ``package`` (``".schedule"``) or absolute; a name that maps to
    ``"." + name`` is that submodule itself. A name the table does not hold raises the usual
    ``AttributeError``.
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(exports[name], package)
        return module if exports[name] == f".{name}" else getattr(module, name)

    def __dir__() -> list[str]:
        return sorted(set(exports) | set(vars(sys.modules[package])))

    return __getattr__, __dir__
