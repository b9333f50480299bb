from __future__ import annotations

import inspect

import layerhoist


def test_all_is_sorted_and_complete() -> None:
    exported = [
        name
        for name, value in vars(layerhoist).items()
        if not name.startswith("_")
        and not inspect.ismodule(value)
        and getattr(value, "__module__", "").startswith("layerhoist")
    ]
    assert layerhoist.__all__ == sorted(layerhoist.__all__)
    assert set(layerhoist.__all__) == set(exported)


def test_push_is_the_coroutine_function() -> None:
    assert inspect.iscoroutinefunction(layerhoist.push)
    assert not inspect.iscoroutinefunction(layerhoist.push_sync)
