from __future__ import annotations

import inspect
import subprocess
import sys

import layerhoist


def test_all_is_sorted_and_complete() -> None:
    assert layerhoist.__all__ == sorted(layerhoist.__all__)
    assert set(layerhoist.__all__) <= set(dir(layerhoist))
    for name in layerhoist.__all__:
        value = getattr(layerhoist, name)
        assert value.__module__.startswith("layerhoist."), name
        assert value.__name__ == name


def test_unknown_names_are_attribute_errors() -> None:
    assert not hasattr(layerhoist, "no_such_name")


def test_importing_the_package_loads_no_push_machinery() -> None:
    # The command imports the package first; the pipeline must wait until a push runs.
    probe = "import layerhoist, sys; print(sorted(sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    assert "layerhoist.transfer.pipeline" not in loaded
    assert "'anyio'" not in loaded


def test_push_is_the_coroutine_function() -> None:
    assert inspect.iscoroutinefunction(layerhoist.push)
    assert not inspect.iscoroutinefunction(layerhoist.push_sync)
