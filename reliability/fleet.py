"""The four services and the bank simulator as real processes, several instances each if asked.

`mynumber_cli.processes` runs one instance of each service on fixed ports with pid files;
fault tests need more (two instances of a service in one consumer group, SIGKILL of one of
them), so this small launcher reuses its commands and environment but keeps its own Popen
objects and ports (`base_port` + an offset per service and instance).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from mynumber_cli import processes

from .stack import REPO

SERVICE_NAMES = ("enrollment", "insurance", "benefits", "licensing")
OFFSETS = {"enrollment": 0, "insurance": 10, "benefits": 20, "licensing": 30}
BANK_OFFSET = 90


def _die_with_parent() -> None:
    """Linux: the instance gets SIGTERM when the test process dies, even by SIGKILL (no orphans)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: stop_all() at the end still stops them


@dataclass
class Instance:
    service: str
    index: int
    port: int
    process: subprocess.Popen | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def name(self) -> str:
        return f"{self.service}-{self.index}"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class Fleet:
    """The running instances of one namespace. Logs go to `log_dir/<service>-<index>.log`."""

    kafka: str
    mongodb: str
    namespace: str
    log_dir: Path
    base_port: int = 24100
    extra_env: dict[str, str] = field(default_factory=dict)
    instances: dict[str, Instance] = field(default_factory=dict)
    bank: Instance | None = None

    def __post_init__(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)

    @property
    def bank_url(self) -> str:
        return f"http://127.0.0.1:{self.base_port + BANK_OFFSET}"

    def environment(self) -> dict[str, str]:
        return processes.environment(self.kafka, self.mongodb, {
            "MYNUMBER_TOPIC_NAMESPACE": self.namespace,
            "MYNUMBER_LOG_LEVEL": "WARNING",
            "MYNUMBER_BANK_BASE_URL": self.bank_url,
            "MYNUMBER_RETRY_MAX_SECONDS": "2",
            "MYNUMBER_PARTNER_CACHE_SECONDS": "30",
            # The bank simulator is local: shorter bank timeouts let a shorter dispatcher lease
            # pass over quickly after a kill -9 (the lease must outlast one bulk call's retries).
            "MYNUMBER_BANK_TIMEOUT_SECONDS": "3",
            "MYNUMBER_DISPATCHER_LEASE_SECONDS": "20",
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        })

    # -- lifecycle ---------------------------------------------------------------------------

    def _spawn(self, instance: Instance, command: list[str]) -> None:
        env = dict(self.environment(), MYNUMBER_HTTP_HOST="127.0.0.1", MYNUMBER_HTTP_PORT=str(instance.port))
        with open(self.log_dir / f"{instance.name}.log", "ab") as log:
            log.write(f"\n===== start {instance.starts + 1} of {instance.name} =====\n".encode())
            log.flush()
            instance.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                                                start_new_session=True, preexec_fn=_die_with_parent)
        instance.starts += 1

    def start_bank(self) -> Instance:
        if self.bank is None:
            self.bank = Instance("bank-simulator", 0, self.base_port + BANK_OFFSET)
        if not self.bank.alive():
            self._spawn(self.bank, [sys.executable, "-m", "uvicorn", "services.benefits.bank_simulator:app",
                                    "--host", "127.0.0.1", "--port", str(self.bank.port), "--log-level", "warning"])
        self._wait_answering([self.bank], "/openapi.json")
        return self.bank

    def start(self, service: str, index: int = 0, *, wait: bool = True) -> Instance:
        key = f"{service}-{index}"
        instance = self.instances.get(key)
        if instance is None:
            instance = self.instances[key] = Instance(service, index, self.base_port + OFFSETS[service] + index)
        if not instance.alive():
            module = processes.service(service).module
            self._spawn(instance, [sys.executable, "-m", *module])
        if wait:
            self.wait_ready([instance])
        return instance

    def start_all(self, *, instances_per_service: int = 1) -> None:
        started = [self.start(s, i, wait=False) for s in SERVICE_NAMES for i in range(instances_per_service)]
        self.wait_ready(started)

    def kill(self, service: str, index: int = 0) -> int:
        """SIGKILL: no shutdown hook runs, offsets in flight are not committed."""
        instance = self.instances[f"{service}-{index}"]
        assert instance.process is not None
        pid = instance.process.pid
        os.kill(pid, signal.SIGKILL)
        instance.process.wait(timeout=30)
        return pid

    def stop(self, service: str, index: int = 0) -> None:
        """SIGTERM: a graceful leave of the consumer group."""
        instance = self.instances.get(f"{service}-{index}")
        if instance is None or not instance.alive():
            return
        assert instance.process is not None
        instance.process.send_signal(signal.SIGTERM)
        try:
            instance.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            instance.process.kill()
            instance.process.wait(timeout=10)

    def stop_all(self) -> None:
        for instance in list(self.instances.values()):
            self.stop(instance.service, instance.index)
        if self.bank is not None and self.bank.alive():
            assert self.bank.process is not None
            self.bank.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.bank.process.wait(timeout=10)
            if self.bank.alive():
                self.bank.process.kill()

    def starts(self) -> dict[str, int]:
        return {name: instance.starts for name, instance in self.instances.items()}

    def crashed(self) -> list[str]:
        """Instances that exited without being told to (a crash loop would show here)."""
        return [i.name for i in self.instances.values() if i.process is not None and i.process.poll() not in (None, -9, -15, 0)]

    # -- readiness -----------------------------------------------------------------------------

    def wait_ready(self, instances: list[Instance], deadline_seconds: float = 180.0) -> None:
        self._wait_answering(instances, "/ready", deadline_seconds)

    def _wait_answering(self, instances: list[Instance], path: str, deadline_seconds: float = 180.0) -> None:
        deadline = time.monotonic() + deadline_seconds  # bounds a hang; not an assertion on speed
        waiting = list(instances)
        while waiting:
            for instance in list(waiting):
                if not instance.alive():
                    raise RuntimeError(f"{instance.name} exited at start; see {self.log_dir / (instance.name + '.log')}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(instance.url + path, timeout=3).status_code == 200:
                        waiting.remove(instance)
            if waiting:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"not ready: {[i.name for i in waiting]}; logs in {self.log_dir}")
                time.sleep(0.5)

    # -- the bank simulator's test controls ----------------------------------------------------

    def bank_faults(self, **plan: float) -> None:
        httpx.put(f"{self.bank_url}/admin/faults", json=plan, timeout=10).raise_for_status()

    def bank_ledger(self) -> dict:
        response = httpx.get(f"{self.bank_url}/admin/ledger", timeout=60)
        response.raise_for_status()
        return response.json()
