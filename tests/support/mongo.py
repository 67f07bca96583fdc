"""Counting the commands a client sends to the database, for tests that prove work goes together."""

from __future__ import annotations

from collections import Counter

from pymongo import monitoring


class CommandCounter(monitoring.CommandListener):
    """Counts commands by name (`find`, `insert`, `update`, `getMore`, ...); pass it as an event listener."""

    def __init__(self) -> None:
        self.commands: Counter[str] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.commands[event.command_name] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass
