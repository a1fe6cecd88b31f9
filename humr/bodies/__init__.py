"""humr.bodies: body models behind one interface, keypoint sets, conversions.

``AnnyBody`` is imported lazily, so that importing this package never imports ``anny``.
"""

from __future__ import annotations

from humr.bodies.base import BodyModel, BodyOutput
from humr.bodies.factory import build_body
from humr.bodies.smpl_body import SMPLBody
from humr.bodies.smplx_body import SMPLXBody

__all__ = ["BodyModel", "BodyOutput", "SMPLXBody", "SMPLBody", "AnnyBody", "build_body"]


def __getattr__(name: str):
    if name == "AnnyBody":
        from humr.bodies.anny_body import AnnyBody

        return AnnyBody
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"AnnyBody"})
