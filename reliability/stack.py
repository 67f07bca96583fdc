"""A private native stack for fault tests: its own Kafka and FerretDB on their own ports and
in their own directory, so restarting them never touches the shared servers on 9092/27017.

`native_stack` reads `MYNUMBER_STACK_DIR`, `MYNUMBER_KAFKA_PORT`, `MYNUMBER_KAFKA_CONTROLLER_PORT`
and `MYNUMBER_MONGODB_PORT` each time it is called, so every call here runs with those
variables set to the private values and restores the caller's environment afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mynumber_cli import native_stack

REPO = Path(__file__).resolve().parents[1]

# Below the kernel's ephemeral range (32768-60999): a client reconnecting in a loop while the
# server is down can be given the server's own port as its local port (a TCP self-connect), and
# the restarted server then cannot bind. Ports in that range made a broker restart fail here.
DEFAULT_KAFKA_PORT = 24092
DEFAULT_MONGODB_PORT = 24017
DEFAULT_SERVICE_BASE_PORT = 24100


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.3)
        return probe.connect_ex(("127.0.0.1", port)) != 0


def free_slot(first: int = 24000, step: int = 200, slots: int = 30) -> int:
    """The first block of ports [base, base+step) whose ports this suite uses are all free, so two
    fault runs at once (two engineers, or CI beside a developer) never share or stop each other's servers."""
    for base in range(first, first + step * slots, step):
        used = [base + 17, base + 18, base + 92, base + 93, base + 100, base + 110, base + 120, base + 130, base + 190]
        if all(_free(port) for port in used):
            return base
    raise RuntimeError(f"no free block of ports between {first} and {first + step * slots}")


def reap_abandoned(parent: Path) -> None:
    """Stop the private stacks of earlier fault runs whose test process is gone (killed before its
    teardown), found by the owner file each run leaves in its stack directory."""
    for owner_file in parent.glob("faultstack*/owner.json"):
        try:
            owner = json.loads(owner_file.read_text())
            os.kill(owner["pid"], 0)
            continue  # its run is still going
        except ProcessLookupError:
            pass
        except (OSError, ValueError, KeyError):
            continue
        PrivateStack(owner_file.parent, owner["kafka_port"], owner["mongodb_port"], owner["service_base_port"]).down()


@dataclass(frozen=True)
class PrivateStack:
    """Where the private servers live and answer, and where the services' HTTP ports start."""

    directory: Path
    kafka_port: int = DEFAULT_KAFKA_PORT
    mongodb_port: int = DEFAULT_MONGODB_PORT
    service_base_port: int = DEFAULT_SERVICE_BASE_PORT

    @classmethod
    def from_environment(cls) -> PrivateStack:
        """`MYNUMBER_FAULT_STACK_DIR`, `MYNUMBER_FAULT_KAFKA_PORT`, `MYNUMBER_FAULT_MONGODB_PORT` and
        `MYNUMBER_FAULT_BASE_PORT` (the services' HTTP ports) override a free block found from 24000 up."""
        base = free_slot() if not os.environ.get("MYNUMBER_FAULT_KAFKA_PORT") else 24000
        kafka_port = int(os.environ.get("MYNUMBER_FAULT_KAFKA_PORT") or base + 92)
        directory = os.environ.get("MYNUMBER_FAULT_STACK_DIR") or str(REPO / ".stack" / f"faultstack-{kafka_port}")
        return cls(
            Path(directory).expanduser().resolve(),
            kafka_port,
            int(os.environ.get("MYNUMBER_FAULT_MONGODB_PORT") or base + 17),
            int(os.environ.get("MYNUMBER_FAULT_BASE_PORT") or base + 100),
        )

    @property
    def kafka(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def mongodb(self) -> str:
        return f"mongodb://127.0.0.1:{self.mongodb_port}/"

    @contextlib.contextmanager
    def _environment(self) -> Iterator[None]:
        if self.kafka_port in (9092, 9093) or self.mongodb_port == 27017:
            raise RuntimeError("the private fault stack must not use the shared servers' ports")
        wanted = {
            "MYNUMBER_STACK_DIR": str(self.directory),
            "MYNUMBER_KAFKA_PORT": str(self.kafka_port),
            "MYNUMBER_KAFKA_CONTROLLER_PORT": str(self.kafka_port + 1),
            "MYNUMBER_MONGODB_PORT": str(self.mongodb_port),
            "MYNUMBER_MONGODB_TLS_PORT": str(self.mongodb_port + 1),
        }
        saved = {name: os.environ.get(name) for name in wanted}
        os.environ.update(wanted)
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def missing_tools(self) -> str | None:
        """Why the native stack cannot be built here, or None. Cached builds need no tools."""
        if not shutil.which("java") and not os.environ.get("JAVA_HOME"):
            return "java (17+) is not installed: the private Kafka broker cannot run"
        kafka_ready = (native_stack.kafka_home() / "libs" / f"kafka_2.13-{native_stack.KAFKA_VERSION}.jar").is_file()
        if not kafka_ready and not shutil.which("mvn"):
            return "Maven is not installed and the Kafka jars are not cached: the private broker cannot be provisioned"
        if not native_stack.ferretdb_binary().is_file() and not shutil.which("go"):
            return "Go is not installed and FerretDB is not built: the private MongoDB-compatible server cannot run"
        return None

    def up(self, *, fresh: bool = True) -> None:
        """Start both servers; `fresh` first stops leftovers of an earlier run and drops their data."""
        reap_abandoned(self.directory.parent)
        with self._environment():
            if fresh:
                native_stack.down()
                for name in ("kafka", "ferretdb"):
                    shutil.rmtree(self.directory / name, ignore_errors=True)
            native_stack.up()
        (self.directory / "owner.json").write_text(json.dumps({
            "pid": os.getpid(), "kafka_port": self.kafka_port, "mongodb_port": self.mongodb_port,
            "service_base_port": self.service_base_port}))

    def down(self) -> None:
        with self._environment():
            native_stack.down()
        (self.directory / "owner.json").unlink(missing_ok=True)

    def stop_kafka(self) -> None:
        with self._environment():
            native_stack.stop_kafka()

    def start_kafka(self) -> None:
        with self._environment():
            native_stack.start_kafka()

    def restart_kafka(self) -> None:
        with self._environment():
            native_stack.restart_kafka()

    def stop_mongodb(self) -> None:
        with self._environment():
            native_stack.stop_mongodb()

    def start_mongodb(self) -> None:
        with self._environment():
            native_stack.start_mongodb()

    def restart_mongodb(self) -> None:
        with self._environment():
            native_stack.restart_mongodb()
