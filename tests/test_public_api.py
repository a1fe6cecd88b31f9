"""The public API: every exported name resolves, and importing a package stays cheap."""

import importlib
import subprocess
import sys

import pytest

PACKAGES = [
    "humr",
    "humr.data",
    "humr.model",
    "humr.training",
    "humr.experiment",
    "humr.losses",
    "humr.flows",
    "humr.bodies",
    "humr.eval",
]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_resolves(package):
    module = importlib.import_module(package)
    assert module.__all__, f"{package} exports nothing"
    missing = [name for name in module.__all__ if getattr(module, name, None) is None]
    assert not missing
    assert set(module.__all__) <= set(dir(module))


def test_unknown_name_is_an_attribute_error():
    import humr.training

    with pytest.raises(AttributeError, match="no_such_name"):
        humr.training.no_such_name  # noqa: B018


def test_importing_the_packages_loads_neither_lightning_nor_anny():
    code = (
        "import sys, humr, humr.training, humr.experiment, humr.model, humr.data, humr.bodies; "
        "print(sorted(m for m in ('lightning', 'anny', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_readme_import_line_works():
    from humr.bodies import build_body
    from humr.flows import ConditionalRealNVP
    from humr.losses import joint_mmd

    assert callable(joint_mmd) and callable(build_body) and isinstance(ConditionalRealNVP, type)
