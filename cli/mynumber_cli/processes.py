"""Runs the four services (and the bank simulator) as local processes, with logs to files.

Each runs `python -m services.<name>` with its own port; pid files and logs live in
`.stack/services/`. `down` stops only the processes recorded in those pid files.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from . import native_stack


@dataclass(frozen=True)
class ServiceProcess:
    name: str
    port: int
    module: tuple[str, ...]  # the command after `python -m`
    health_path: str = "/ready"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


BANK_SIMULATOR = ServiceProcess(
    "bank-simulator", 8110,
    ("uvicorn", "services.benefits.bank_simulator:app", "--host", "127.0.0.1", "--port", "8110", "--log-level", "warning"),
    "/openapi.json",
)
SERVICES = (
    ServiceProcess("enrollment", 8101, ("services.enrollment",)),
    ServiceProcess("insurance", 8102, ("services.insurance",)),
    ServiceProcess("benefits", 8103, ("services.benefits",)),
    ServiceProcess("licensing", 8104, ("services.licensing",)),
)
ALL = (BANK_SIMULATOR, *SERVICES)


def _exists(process: ServiceProcess) -> bool:
    module = process.module[1].split(":")[0] if process.module[0] == "uvicorn" else process.module[0]
    path = native_stack._repo_root().joinpath(*module.split("."))
    return path.with_suffix(".py").exists() or (path / "__main__.py").exists()


def available() -> tuple[ServiceProcess, ...]:
    """The processes whose code is in this checkout."""
    return tuple(p for p in ALL if _exists(p))


def service(name: str) -> ServiceProcess:
    return next(s for s in ALL if s.name == name)


def _dir() -> Path:
    path = native_stack.stack_dir() / "services"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _pid_file(process: ServiceProcess) -> Path:
    return _dir() / f"{process.name}.pid"


def log_file(process: ServiceProcess) -> Path:
    return _dir() / f"{process.name}.log"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        return state != "Z"
    except OSError:
        return True


def _pid(process: ServiceProcess) -> int | None:
    try:
        pid = int(_pid_file(process).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def environment(kafka: str, mongodb: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "MYNUMBER_KAFKA_BOOTSTRAP_SERVERS": kafka,
            "MYNUMBER_MONGODB_URL": mongodb,
            "MYNUMBER_BANK_BASE_URL": BANK_SIMULATOR.url,
            "MYNUMBER_LOG_LEVEL": env.get("MYNUMBER_LOG_LEVEL", "INFO"),
        }
    )
    env.update(extra or {})
    return env


def start(process: ServiceProcess, env: dict[str, str]) -> int:
    """Start one process unless it already runs; returns its pid."""
    if (pid := _pid(process)) is not None:
        return pid
    command = [sys.executable, "-m", *process.module]
    child_env = dict(env, MYNUMBER_HTTP_HOST="127.0.0.1", MYNUMBER_HTTP_PORT=str(process.port))
    with open(log_file(process), "wb") as log:  # one run's log: the previous run's is replaced
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=child_env,
                                 cwd=native_stack._repo_root(), start_new_session=True)
    _pid_file(process).write_text(str(child.pid))
    return child.pid


def healthy(process: ServiceProcess, timeout: float = 2.0) -> bool:
    try:
        return httpx.get(process.url + process.health_path, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def wait_healthy(processes: tuple[ServiceProcess, ...], deadline_seconds: float = 90.0) -> list[ServiceProcess]:
    """Wait until every process answers its health check; returns those that never did."""
    deadline = time.monotonic() + deadline_seconds
    waiting = list(processes)
    while waiting and time.monotonic() < deadline:
        waiting = [p for p in waiting if not healthy(p)]
        for p in waiting:
            if _pid(p) is None:
                return waiting  # it died: no point waiting
        if waiting:
            time.sleep(0.5)
    return waiting


def stop(process: ServiceProcess, *, kill: bool = False) -> bool:
    pid = _pid(process)
    _pid_file(process).unlink(missing_ok=True)
    if pid is None:
        return False
    os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
    for _ in range(100):
        if not _alive(pid):
            return True
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    return True


def status() -> list[dict[str, object]]:
    return [
        {"name": p.name, "pid": _pid(p), "url": p.url, "healthy": _pid(p) is not None and healthy(p),
         "log": str(log_file(p))}
        for p in ALL
    ]
