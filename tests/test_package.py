"""The public surface: sorted, complete, lazy, versioned."""

from __future__ import annotations

import importlib
import subprocess
import sys

import scaler_workbench


def test_all_is_sorted_and_unique() -> None:
    names = scaler_workbench.__all__
    assert names == sorted(names)
    assert len(names) == len(set(names))


def test_every_public_name_resolves_to_its_module() -> None:
    for name in scaler_workbench.__all__:
        if name == "__version__":
            continue
        obj = getattr(scaler_workbench, name)
        module = importlib.import_module(f"scaler_workbench.{scaler_workbench._LAZY[name]}")
        assert getattr(module, name) is obj, name
        assert name in module.__all__, f"{name} missing from {module.__name__}.__all__"


def _isort_key(name: str) -> tuple[int, str]:
    # ruff's RUF022 order: CONSTANTS, then Classes, then functions
    if name.isupper():
        return (0, name)
    return (1, name) if name[:1].isupper() else (2, name)


def test_module_all_lists_are_sorted() -> None:
    for module_name in sorted(set(scaler_workbench._LAZY.values())):
        module = importlib.import_module(f"scaler_workbench.{module_name}")
        assert list(module.__all__) == sorted(module.__all__, key=_isort_key), module_name


def test_version_comes_from_metadata() -> None:
    from importlib.metadata import version

    assert scaler_workbench.__version__ == version("scaler-workbench")


def test_unknown_attribute_raises_attribute_error() -> None:
    try:
        scaler_workbench.does_not_exist  # noqa: B018
    except AttributeError as exc:
        assert "does_not_exist" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")


def test_import_is_lazy_about_heavy_dependencies() -> None:
    code = (
        "import sys, scaler_workbench\n"
        "heavy = ['great_expectations', 'ipywidgets', 'openpyxl', 'matplotlib']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"importing scaler_workbench pulled in: {out}"


def test_py_typed_is_shipped() -> None:
    from importlib.resources import files

    assert files("scaler_workbench").joinpath("py.typed").is_file()


def test_tables_and_quarantine_are_exported() -> None:
    from scaler_workbench import schema

    assert scaler_workbench.Tables is schema.Tables
    assert scaler_workbench.QUARANTINE is schema.QUARANTINE
    assert {"QUARANTINE", "Tables"} <= set(dir(scaler_workbench))
