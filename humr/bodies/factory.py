"""Build a body model by name.

Example:
    >>> build_body("smplx")
    Traceback (most recent call last):
    ...
    ValueError: model_path: the 'smplx' body needs its model files ...
"""

from __future__ import annotations

from pathlib import Path

from humr.bodies.base import BodyModel

__all__ = ["BODY_NAMES", "build_body"]

#: Names :func:`build_body` accepts.
BODY_NAMES: tuple[str, ...] = ("anny", "smplx", "smpl")

_FILES = {
    "smplx": "a directory holding SMPLX_NEUTRAL.npz (or the file), from https://smpl-x.is.tue.mpg.de",
    "smpl": "a directory holding SMPL_NEUTRAL.npz (or the file), from https://smpl.is.tue.mpg.de",
}


def build_body(name: str = "anny", model_path: str | Path | None = None, **kw) -> BodyModel:
    """A body model by name.

    Args:
        name: ``"anny"`` (default; open model, needs no file), ``"smplx"`` or ``"smpl"``.
        model_path: required for ``"smplx"`` and ``"smpl"`` (licensed model files); must be
            ``None`` for ``"anny"``.
        **kw: keyword arguments of the body class (``gender``, ``num_shape``, ``h36m_regressor``,
            ...).
    """
    if name == "anny":
        from humr.bodies.anny_body import AnnyBody

        if model_path is not None:
            raise ValueError(
                f"model_path: the 'anny' body ships with its package and takes no model file, "
                f"found model_path={str(model_path)!r}"
            )
        return AnnyBody(**kw)
    if name not in BODY_NAMES:
        raise ValueError(f"name: expected one of {list(BODY_NAMES)}, found {name!r}")
    if model_path is None:
        raise ValueError(
            f"model_path: the {name!r} body needs its model files ({_FILES[name]}); "
            "pass model_path=, or use the 'anny' body, which needs none"
        )
    if name == "smplx":
        from humr.bodies.smplx_body import SMPLXBody

        return SMPLXBody(model_path, **kw)
    from humr.bodies.smpl_body import SMPLBody

    return SMPLBody(model_path, **kw)
