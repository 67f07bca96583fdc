"""Simulated database failures: one method of a store (or collection) loses its connection once.

`fail_once` replaces an async method with a wrapper that raises pymongo's `AutoReconnect` on one
call, either before the real method runs (nothing written) or after it returned (the write is
done, but the caller never learns it), and passes every other call through. The returned `Fault`
shows which calls it saw and the one it failed, so a test can check that the failure happened
where it meant it to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from pymongo.errors import AutoReconnect


@dataclass(frozen=True)
class Call:
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass
class Fault:
    """What the faulty method saw: every call that matched `when` (in order), and the one it failed."""

    calls: list[Call] = field(default_factory=list)
    failed: Call | None = None


def fail_once(
    monkeypatch: pytest.MonkeyPatch,
    obj: Any,
    name: str,
    *,
    after: bool = False,
    when: Callable[..., Any] | None = None,
    on_call: int = 1,
    on_failure: Callable[[], Any] | None = None,
) -> Fault:
    """Make `obj.name` raise `AutoReconnect` once, on the `on_call`-th call for which
    `when(*args, **kwargs)` is true (every call if `when` is None).

    With `after=True` the real method runs first and the failure comes after it returned, so its
    write is done; otherwise the failing call never reaches the real method. Calls are counted
    (and recorded in `Fault.calls`) as they reach that point: with `after=True`, once the real
    method has returned. `on_failure` runs just before the error is raised (to move a clock, say).
    The original method is restored by `monkeypatch` at the end of the test (or on `undo()`).
    """
    original = getattr(obj, name)
    fault = Fault()
    where = "after" if after else "before"

    def count(call: Call) -> None:
        if when is not None and not when(*call.args, **call.kwargs):
            return
        fault.calls.append(call)
        if fault.failed is None and len(fault.calls) == on_call:
            fault.failed = call
            if on_failure is not None:
                on_failure()
            raise AutoReconnect(f"connection lost {where} {type(obj).__name__}.{name} (simulated)")

    async def connection_lost_once(*args: Any, **kwargs: Any) -> Any:
        call = Call(args, kwargs)
        if after:
            result = await original(*args, **kwargs)
            count(call)
            return result
        count(call)
        return await original(*args, **kwargs)

    monkeypatch.setattr(obj, name, connection_lost_once)
    return fault
