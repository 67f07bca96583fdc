"""Waiting for something the services do in the background."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def eventually(check: Callable[[], Awaitable[Any]], *, what: str, timeout: float = 60.0) -> Any:
    """Wait until `check()` returns something truthy. A deadline that bounds a hang, not a timed assertion."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.1)
