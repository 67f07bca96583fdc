"""Native real-server stack for development, tests and CI: ``up | down | status``.

Starts, as plain processes on 127.0.0.1 (no Docker needed):

* **Apache Kafka** as a single KRaft node (broker and controller in one JVM).
  The broker jars come from Maven Central through Maven (see
  ``native_stack_files/pom.xml``) and are cached outside the work tree.
* **FerretDB** on its SQLite backend, a MongoDB wire-protocol server, built
  from its Go module with the local Go toolchain and cached likewise.

Optionally (``--secure``) a second, separate Kafka node with TLS and SASL/SCRAM-SHA-512
(``SASL_SSL``) on its client listener and the KRaft ``StandardAuthorizer`` (ACLs
enforced, nothing allowed without an ACL). Its certificate is signed by a private CA
made for it (``<stack dir>/kafka-secure/tls/ca.pem``, which clients trust).

Usage (with ``cli/`` on ``PYTHONPATH``)::

    python -m mynumber_cli.native_stack up [--secure]
    python -m mynumber_cli.native_stack status [--secure] [--json]
    python -m mynumber_cli.native_stack down [--secure] [--all]
    python -m mynumber_cli.native_stack restart kafka|mongodb [--secure]

Layout:

* downloads and builds: ``${MYNUMBER_CACHE_DIR:-~/.cache/mynumber}``
  (plus Maven's ``~/.m2`` and Go's module/build caches);
* data, logs and pid files: ``.stack/`` at the repository root (git-ignored),
  or ``$MYNUMBER_STACK_DIR``.

FerretDB also listens with TLS on ``MYNUMBER_MONGODB_TLS_PORT`` (MongoDB port + 1), with a
certificate from a private CA made for it (``<stack dir>/ferretdb/tls/ca.pem``).

Environment overrides: ``MYNUMBER_KAFKA_PORT`` (9092),
``MYNUMBER_KAFKA_CONTROLLER_PORT`` (client port + 1),
``MYNUMBER_KAFKA_SECURE_PORT`` (9192), ``MYNUMBER_KAFKA_SECURE_CONTROLLER_PORT``
(secure port + 1), ``MYNUMBER_MONGODB_PORT`` (27017),
``MYNUMBER_KAFKA_HEAP_OPTS`` ("-Xms128m -Xmx512m"),
``MYNUMBER_STACK_TIMEOUT`` (readiness deadline in seconds, 90).

The readiness checks use aiokafka and pymongo, imported only when needed.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import tls
from .ferretdb_patch import FERRETDB_BUILD_SUFFIX, PatchDoesNotApply, patch_ferretdb_sources

# --------------------------------------------------------------------------
# Versions and defaults
# --------------------------------------------------------------------------

# Apache Kafka 4.1.1: the newest 4.x line that is fully served and runs on the
# Java 17 of this machine (4.x brokers need Java 17+). No 3.9 fallback needed.
KAFKA_VERSION = "4.1.1"
FERRETDB_VERSION = "v1.24.2"
FERRETDB_GOGC = "400"  # see _FerretDB.environment
FERRETDB_MODULE = "github.com/FerretDB/FerretDB"

HOST = "127.0.0.1"
DEFAULT_KAFKA_PORT = 9092
DEFAULT_KAFKA_SECURE_PORT = 9192
DEFAULT_MONGODB_PORT = 27017
DEFAULT_TIMEOUT_S = 90.0
DEFAULT_KAFKA_HEAP_OPTS = "-Xms128m -Xmx512m"

SCRAM_MECHANISM = "SCRAM-SHA-512"
SECURE_ADMIN_USER = "admin"

FILES_DIR = Path(__file__).resolve().parent / "native_stack_files"
_LOG_ROTATE_BYTES = 50 * 1024 * 1024  # a log above this is moved to *.log.1 at start

_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
# SCRAM passwords go through ConfigCommand's "[k=v,...]" syntax and a JAAS
# line: keep them to characters that need no quoting there.
_PASSWORD_RE = re.compile(r"^[A-Za-z0-9._~+-]{1,256}$")


class StackError(RuntimeError):
    """A server could not be provisioned, started, stopped or reached."""


@dataclass(frozen=True)
class StackEndpoints:
    """Where the servers of the stack answer."""

    kafka_bootstrap: str  # "127.0.0.1:PORT"
    mongodb_url: str  # "mongodb://127.0.0.1:PORT/"
    mongodb_tls_url: str | None = None  # FerretDB's TLS listener, trusting the stack's CA
    secure: bool = False
    # For the secure node: how a client authenticates (admin = super user).
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_admin_username: str | None = None
    kafka_admin_password: str | None = dataclasses.field(default=None, repr=False)
    kafka_ca_file: str | None = None  # the CA that signed the secure node's certificate (TLS)

    def kafka_admin_client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka clients connecting as the admin."""
        kwargs: dict[str, Any] = {"bootstrap_servers": self.kafka_bootstrap}
        if self.secure:
            kwargs.update(
                security_protocol=self.kafka_security_protocol,
                sasl_mechanism=self.kafka_sasl_mechanism,
                sasl_plain_username=self.kafka_admin_username,
                sasl_plain_password=self.kafka_admin_password,
                ssl_context=_trusting(self.kafka_ca_file),
            )
        return kwargs


def _trusting(ca_file: str | Path | None) -> Any:
    """An SSL context that trusts only `ca_file` and checks the broker's name."""
    from aiokafka.helpers import create_ssl_context

    return create_ssl_context(cafile=str(ca_file)) if ca_file else None


# --------------------------------------------------------------------------
# Paths, environment
# --------------------------------------------------------------------------


def _say(message: str) -> None:
    with contextlib.suppress(BrokenPipeError):  # e.g. `... up | head`
        print(f"[stack] {message}", flush=True)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise StackError(f"{name}={raw!r} is not a port number") from exc
    if not 0 < value < 65536:
        raise StackError(f"{name}={raw!r} is not a port number")
    return value


def _timeout() -> float:
    raw = os.environ.get("MYNUMBER_STACK_TIMEOUT", "").strip()
    return float(raw) if raw else DEFAULT_TIMEOUT_S


def cache_dir() -> Path:
    """Downloads and builds (outside the work tree)."""
    raw = os.environ.get("MYNUMBER_CACHE_DIR", "").strip()
    return Path(raw).expanduser() if raw else Path.home() / ".cache" / "mynumber"


def _repo_root() -> Path:
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for candidate in (start, *start.parents):
            if (candidate / ".git").exists():
                return candidate
    return Path.cwd().resolve()


def stack_dir() -> Path:
    """Data, logs and pid files (git-ignored ``.stack/`` at the repo root)."""
    raw = os.environ.get("MYNUMBER_STACK_DIR", "").strip()
    return Path(raw).expanduser().resolve() if raw else _repo_root() / ".stack"


# --------------------------------------------------------------------------
# Process helpers
# --------------------------------------------------------------------------

# Popen objects of the servers started by this Python process, so that they
# can be reaped (no zombies) when this same process stops them.
_CHILDREN: dict[int, subprocess.Popen] = {}


def _reap(pid: int) -> None:
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is not None:
            _CHILDREN.pop(pid, None)
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _pid_alive(pid: int) -> bool:
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return False
    except (OSError, IndexError):
        pass
    return True


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return raw.replace(b"\0", b" ").decode(errors="replace")
    except FileNotFoundError:
        pass
    except OSError:
        return ""
    try:  # no /proc (macOS)
        return subprocess.run(
            ["ps", "-o", "command=", "-p", str(pid)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
    except OSError:
        return ""


def _port_open(port: int, timeout: float = 0.5) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((HOST, port)) == 0


def _tail(path: Path, lines: int = 40) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(data.splitlines()[-lines:])


@contextlib.contextmanager
def _stack_lock() -> Iterator[None]:
    """Serialise up/down/restart between processes sharing one .stack/."""
    root = stack_dir()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run_async(factory: Callable[[], Any]) -> Any:
    """Run ``factory()`` (a coroutine) to completion, even from inside a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    """Silence a library's connection-refused chatter while polling."""
    logger = logging.getLogger(name)
    previous = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(previous)


# --------------------------------------------------------------------------
# Provisioning (cached downloads and builds)
# --------------------------------------------------------------------------


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME", "").strip()
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if not java:
        raise StackError("java (17 or newer) is needed for Apache Kafka and was not found on PATH")
    return java


def kafka_home() -> Path:
    return cache_dir() / f"kafka-{KAFKA_VERSION}"


def _kafka_libs_glob() -> str:
    return str(kafka_home() / "libs" / "*")


def ensure_kafka_dist() -> Path:
    """Fetch the Kafka broker jars into the cache once; return the Kafka home."""
    home = kafka_home()
    libs = home / "libs"
    pom_text = (FILES_DIR / "pom.xml").read_text()
    stamp = hashlib.sha256(f"{KAFKA_VERSION}\n{pom_text}".encode()).hexdigest()[:16]
    marker = home / ".complete"
    if (
        marker.is_file()
        and marker.read_text().strip() == stamp
        and (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file()
    ):
        return home
    mvn = shutil.which("mvn")
    if not mvn:
        raise StackError("Maven (mvn) is needed to fetch the Apache Kafka jars and was not found")
    _say(f"Fetching Apache Kafka {KAFKA_VERSION} jars from Maven Central (first run only) ...")
    started = time.monotonic()
    home.mkdir(parents=True, exist_ok=True)
    (home / "pom.xml").write_text(pom_text)
    staging = home / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    proc = subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(home / "pom.xml"),
            f"-Dkafka.version={KAFKA_VERSION}",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
        ],
        cwd=home,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0 or not (staging / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file():
        raise StackError("Maven could not fetch the Apache Kafka jars:\n" + (proc.stdout + proc.stderr)[-4000:])
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    shutil.rmtree(home / "target", ignore_errors=True)
    marker.write_text(stamp + "\n")
    _say(f"Apache Kafka {KAFKA_VERSION} jars cached in {libs} ({time.monotonic() - started:.1f}s)")
    return home


FERRETDB_BUILD = f"{FERRETDB_VERSION}-{FERRETDB_BUILD_SUFFIX}"


def ferretdb_binary() -> Path:
    return cache_dir() / f"ferretdb-{FERRETDB_BUILD}" / "bin" / "ferretdb"


def ensure_ferretdb() -> Path:
    """Build the FerretDB binary into the cache once; return its path.

    ``go install github.com/FerretDB/FerretDB/cmd/ferretdb@v1.24.2`` compiles,
    but that binary panics at start: FerretDB's ``build/version/version.txt``
    is generated by its release tooling and is not part of the Go module zip.
    So the module is fetched with ``go mod download``, copied to a scratch
    directory in the cache, given that one-line version file, and built with
    ``go build`` - the same sources at the same tag, with the five fixes in
    ``ferretdb_patch.py`` (table scans, lost concurrent updates, hanging bulk updates, debug bookkeeping).
    """
    binary = ferretdb_binary()
    marker = binary.parent.parent / ".complete"
    if binary.is_file() and os.access(binary, os.X_OK) and marker.is_file():
        return binary
    go = shutil.which("go")
    if not go:
        raise StackError("Go is needed to build FerretDB and was not found on PATH")
    _say(f"Building FerretDB {FERRETDB_VERSION} with {go} (first run only, ~2 minutes) ...")
    started = time.monotonic()
    env = dict(os.environ, GOWORK="off", GOFLAGS="-buildvcs=false", CGO_ENABLED="0")
    with tempfile.TemporaryDirectory(prefix="ferretdb-mod-") as scratch:
        download = subprocess.run(
            [go, "mod", "download", "-json", f"{FERRETDB_MODULE}@{FERRETDB_VERSION}"],
            cwd=scratch,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if download.returncode != 0:
            raise StackError(
                f"go mod download {FERRETDB_MODULE}@{FERRETDB_VERSION} failed:\n"
                + (download.stdout + download.stderr)[-4000:]
            )
        module_dir = Path(json.loads(download.stdout)["Dir"])
        src = Path(scratch) / "src"
        shutil.copytree(module_dir, src)
        for path in (src, *src.rglob("*")):
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o200)
        version_dir = src / "build" / "version"
        (version_dir / "version.txt").write_text(FERRETDB_VERSION + "\n")
        (version_dir / "package.txt").write_text("mynumber-native-stack\n")
        try:
            patch_ferretdb_sources(src)  # five fixes: see ferretdb_patch.py
        except PatchDoesNotApply as error:
            raise StackError(str(error)) from error
        binary.parent.mkdir(parents=True, exist_ok=True)
        partial = binary.with_name("ferretdb.partial")
        build = subprocess.run(
            [go, "build", "-o", str(partial), "./cmd/ferretdb"],
            cwd=src,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if build.returncode != 0:
            raise StackError("go build of FerretDB failed:\n" + (build.stdout + build.stderr)[-4000:])
    version = subprocess.run([str(partial), "--version"], capture_output=True, text=True, check=False)
    if FERRETDB_VERSION not in version.stdout:
        raise StackError(f"the FerretDB build does not report {FERRETDB_VERSION}:\n{version.stdout}")
    partial.replace(binary)
    marker.write_text(FERRETDB_BUILD + "\n")
    _say(f"FerretDB {FERRETDB_BUILD} built: {binary} ({time.monotonic() - started:.1f}s)")
    return binary


def _run_kafka_tool(main_class: str, args: list[str], *, timeout: float = 120) -> str:
    """Run one of Kafka's Java command line tools from the cached jars."""
    ensure_kafka_dist()
    cmd = [
        _java(),
        "-Xmx256m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={FILES_DIR / 'tools-log4j2.yaml'}",
        "-cp",
        _kafka_libs_glob(),
        main_class,
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise StackError(
            f"{main_class} {' '.join(args)} failed (exit {proc.returncode}):\n" + (proc.stdout + proc.stderr)[-4000:]
        )
    return proc.stdout


# --------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------


class _Server:
    """A server process of the stack, tracked by a pid file in .stack/."""

    key = ""
    kind = ""  # what answers on the port: "Kafka broker", "MongoDB server"

    @property
    def title(self) -> str:  # e.g. "Apache Kafka 4.1.1 (KRaft)"
        raise NotImplementedError

    @property
    def port(self) -> int:
        raise NotImplementedError

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return stack_dir() / f"{self.key}.pid"

    @property
    def log_file(self) -> Path:
        return stack_dir() / "logs" / f"{self.key}.log"

    @property
    def data_dir(self) -> Path:
        return stack_dir() / self.key

    @property
    def tls_dir(self) -> Path:
        """Where a TLS listener's private CA and certificate live (`tls.server_tls`)."""
        return self.data_dir / "tls"

    @property
    def ca_file(self) -> Path:
        """The CA that clients of this server's TLS listener trust."""
        return self.tls_dir / tls.CA_FILE

    @property
    def marker(self) -> str:
        """A string in the command line of the process this script starts."""
        raise NotImplementedError

    # -- to implement --------------------------------------------------------
    def provision(self) -> None:
        raise NotImplementedError

    def prepare(self) -> None:
        """Write configuration / initialise storage before the first start."""

    def command(self) -> list[str]:
        raise NotImplementedError

    def probe(self) -> bool:
        """True when the server answers a real protocol request."""
        raise NotImplementedError

    def extra_ports(self) -> list[int]:
        return []

    # -- pid file ------------------------------------------------------------
    def recorded_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def own_pid(self) -> int | None:
        """The pid from the pid file if that process is alive and is ours."""
        pid = self.recorded_pid()
        if pid is None or not _pid_alive(pid):
            return None
        if self.marker not in _cmdline(pid):
            return None  # the pid was reused by an unrelated process
        return pid

    def clear_pid_file(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()

    def safe_probe(self) -> bool:
        try:
            return bool(self.probe())
        except Exception:  # noqa: BLE001 - any failure means "not answering"
            return False

    # -- lifecycle -----------------------------------------------------------
    def ensure_started(self) -> str:
        """Start the server unless it already runs. Returns what was done:
        "started", "running" (ours, from an earlier run) or "external"."""
        pid = self.own_pid()
        if pid is not None:
            return "running"
        if self.recorded_pid() is not None:
            _say(f"{self.title}: stale pid file {self.pid_file} (pid {self.recorded_pid()}), cleaning up")
            self.clear_pid_file()
        if _port_open(self.port):
            if self.safe_probe():
                return "external"
            raise StackError(
                f"{HOST}:{self.port} is already in use by a process that does not answer as a "
                f"{self.kind}; free the port or choose another one (see the module's docstring)"
            )
        for port in self.extra_ports():
            if _port_open(port):
                raise StackError(f"{self.title}: port {HOST}:{port} is already in use")
        self.provision()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        self.start_process()
        return "started"

    def environment(self) -> dict[str, str] | None:
        """The server's environment: this process's unless a server needs more."""
        return None

    def start_process(self) -> int:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            if self.log_file.stat().st_size > _LOG_ROTATE_BYTES:
                self.log_file.replace(self.log_file.with_name(self.log_file.name + ".1"))
        with self.log_file.open("ab") as log:
            log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self.title} =====\n".encode())
            log.flush()
            proc = subprocess.Popen(
                self.command(),
                cwd=self.data_dir,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        _CHILDREN[proc.pid] = proc
        self.pid_file.write_text(f"{proc.pid}\n")
        return proc.pid

    def wait_ready(self, deadline: float) -> None:
        while True:
            pid = self.recorded_pid()
            if pid is not None and not _pid_alive(pid):
                self.clear_pid_file()
                self.fail(f"{self.title} exited during start-up")
            if self.safe_probe():
                return
            if time.monotonic() >= deadline:
                self.fail(f"{self.title} did not answer on {self.address} in time")
            time.sleep(0.5)

    def fail(self, message: str) -> None:
        tail = _tail(self.log_file)
        print(
            f"[stack] ERROR: {message}\n--- last lines of {self.log_file} ---\n{tail}\n---", file=sys.stderr, flush=True
        )
        raise StackError(f"{message} (log: {self.log_file})")

    def stop(self, *, timeout: float = 45.0) -> str:
        """Stop the process recorded in the pid file. Returns what was done."""
        pid = self.recorded_pid()
        if pid is None:
            return "not running (no pid file)"
        if not _pid_alive(pid) or self.marker not in _cmdline(pid):
            self.clear_pid_file()
            return f"not running (stale pid file for pid {pid} removed)"
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        end = time.monotonic() + timeout
        while time.monotonic() < end and _pid_alive(pid):
            time.sleep(0.2)
        how = "SIGTERM"
        if _pid_alive(pid):
            how = "SIGKILL after SIGTERM timed out"
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            end = time.monotonic() + 10
            while time.monotonic() < end and _pid_alive(pid):
                time.sleep(0.1)
        child = _CHILDREN.pop(pid, None)
        if child is not None:
            with contextlib.suppress(Exception):
                child.wait(timeout=1)
        self.clear_pid_file()
        return f"stopped (pid {pid}, {how})"

    def status(self) -> dict[str, Any]:
        pid = self.own_pid()
        stale = pid is None and self.recorded_pid() is not None
        answers = self.safe_probe() if (pid is not None or _port_open(self.port)) else False
        if pid is not None:
            state = "running"
        elif answers:
            state = "external"  # something not started by this script answers
        else:
            state = "stopped"
        return {
            "name": self.title,
            "state": state,
            "pid": pid,
            "address": self.address,
            "answers": answers,
            "stale_pid_file": stale,
            "log": str(self.log_file),
        }


class _Kafka(_Server):
    kind = "Kafka broker"

    def __init__(self, secure: bool = False) -> None:
        self.secure = secure
        self.key = "kafka-secure" if secure else "kafka"

    @property
    def title(self) -> str:
        extra = f", TLS + SASL/{SCRAM_MECHANISM} + ACLs" if self.secure else ""
        return f"Apache Kafka {KAFKA_VERSION} (KRaft{extra})"

    @property
    def port(self) -> int:
        if self.secure:
            return _env_int("MYNUMBER_KAFKA_SECURE_PORT", DEFAULT_KAFKA_SECURE_PORT)
        return _env_int("MYNUMBER_KAFKA_PORT", DEFAULT_KAFKA_PORT)

    @property
    def controller_port(self) -> int:
        name = "MYNUMBER_KAFKA_SECURE_CONTROLLER_PORT" if self.secure else "MYNUMBER_KAFKA_CONTROLLER_PORT"
        return _env_int(name, self.port + 1)

    def extra_ports(self) -> list[int]:
        return [self.controller_port]

    @property
    def props_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_dirs(self) -> Path:
        return self.data_dir / "data"

    @property
    def format_file(self) -> Path:
        return self.data_dir / "format.json"

    @property
    def admin_file(self) -> Path:
        return self.data_dir / "admin.json"

    @property
    def admin_properties(self) -> Path:
        return self.data_dir / "admin-client.properties"

    @property
    def marker(self) -> str:
        return str(self.props_file)

    def provision(self) -> None:
        ensure_kafka_dist()

    # -- secure-mode credentials --------------------------------------------
    def admin_password(self, *, create: bool = False) -> str | None:
        try:
            return json.loads(self.admin_file.read_text())["password"]
        except (OSError, ValueError, KeyError):
            pass
        if not create:
            return None
        password = os.environ.get("MYNUMBER_KAFKA_ADMIN_PASSWORD", "").strip() or secrets.token_hex(16)
        if not _PASSWORD_RE.match(password):
            raise StackError("MYNUMBER_KAFKA_ADMIN_PASSWORD may only use A-Z a-z 0-9 . _ ~ + -")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.admin_file.write_text(json.dumps({"username": SECURE_ADMIN_USER, "password": password}))
        self.admin_file.chmod(0o600)
        return password

    def _jaas(self, username: str, password: str) -> str:
        return (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{username}" password="{password}";'
        )

    def write_admin_properties(self) -> Path:
        password = self.admin_password()
        if password is None:
            raise StackError(f"no admin credentials for the secure Kafka node in {self.admin_file}")
        self.admin_properties.write_text(
            "security.protocol=SASL_SSL\n"
            f"sasl.mechanism={SCRAM_MECHANISM}\n"
            f"sasl.jaas.config={self._jaas(SECURE_ADMIN_USER, password)}\n"
            "ssl.truststore.type=PEM\n"
            f"ssl.truststore.location={self.ca_file}\n"
        )
        self.admin_properties.chmod(0o600)
        return self.admin_properties

    # -- configuration and storage -------------------------------------------
    def render_properties(self) -> str:
        if self.secure:
            listener = "SASL_SSL"
            protocol_map = "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT"
            password = self.admin_password(create=True)
            assert password is not None
            certificates = tls.server_tls(self.tls_dir)
            extra = "\n".join(
                [
                    "# Secure mode: TLS and SASL/SCRAM on the client listener, ACLs enforced.",
                    "ssl.keystore.type=PEM",
                    f"ssl.keystore.location={certificates.server_file}",
                    "ssl.truststore.type=PEM",  # the broker reaches itself through the same listener
                    f"ssl.truststore.location={certificates.ca_file}",
                    "ssl.enabled.protocols=TLSv1.3,TLSv1.2",
                    f"sasl.enabled.mechanisms={SCRAM_MECHANISM}",
                    f"sasl.mechanism.inter.broker.protocol={SCRAM_MECHANISM}",
                    "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
                    + self._jaas(SECURE_ADMIN_USER, password),
                    "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                    "allow.everyone.if.no.acl.found=false",
                    # The controller listener is PLAINTEXT on loopback, so the
                    # broker reaches its controller as ANONYMOUS: a super user.
                    f"super.users=User:{SECURE_ADMIN_USER};User:ANONYMOUS",
                ]
            )
        else:
            listener = "PLAINTEXT"
            protocol_map = "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
            extra = ""
        template = string.Template((FILES_DIR / "server.properties.template").read_text())
        return template.substitute(
            controller_port=self.controller_port,
            client_port=self.port,
            client_listener_name=listener,
            listener_security_protocol_map=protocol_map,
            log_dirs=str(self.log_dirs),
            extra=extra,
        )

    def prepare(self) -> None:
        had_admin_credentials = self.admin_file.is_file()
        self.props_file.write_text(self.render_properties())
        if self.secure:
            self.write_admin_properties()
        formatted = (self.log_dirs / "meta.properties").is_file()
        if formatted:
            try:
                info = json.loads(self.format_file.read_text())
            except (OSError, ValueError):
                info = {}
            if info.get("controller_port") != self.controller_port:
                reason = f"controller port changed ({info.get('controller_port')} -> {self.controller_port})"
            elif self.secure and not had_admin_credentials:
                reason = f"the admin credentials it was formatted with are gone ({self.admin_file})"
            else:
                return
            _say(f"{self.title}: {reason}; re-formatting {self.log_dirs} (its data is dropped)")
            shutil.rmtree(self.log_dirs)
        cluster_id = _kafka_uuid()
        args = ["format", "-t", cluster_id, "-c", str(self.props_file), "--standalone"]
        if self.secure:
            password = self.admin_password(create=True)
            args += ["--add-scram", f"{SCRAM_MECHANISM}=[name={SECURE_ADMIN_USER},password={password}]"]
        _run_kafka_tool("kafka.tools.StorageTool", args)
        self.format_file.write_text(
            json.dumps(
                {
                    "cluster_id": cluster_id,
                    "controller_port": self.controller_port,
                    "kafka_version": KAFKA_VERSION,
                    "secure": self.secure,
                }
            )
        )

    def command(self) -> list[str]:
        heap = os.environ.get("MYNUMBER_KAFKA_HEAP_OPTS", "").split() or DEFAULT_KAFKA_HEAP_OPTS.split()
        return [
            _java(),
            *heap,
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={FILES_DIR / 'log4j2.yaml'}",
            f"-Dkafka.logs.dir={self.log_file.parent}",
            "-cp",
            _kafka_libs_glob(),
            "kafka.Kafka",
            str(self.props_file),
        ]

    def client_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"bootstrap_servers": self.address}
        if self.secure:
            kwargs.update(
                security_protocol="SASL_SSL",
                sasl_mechanism=SCRAM_MECHANISM,
                sasl_plain_username=SECURE_ADMIN_USER,
                sasl_plain_password=self.admin_password() or "",
                ssl_context=_trusting(self.ca_file),
            )
        return kwargs

    def probe(self) -> bool:
        return _kafka_answers(self.client_kwargs())


class _FerretDB(_Server):
    key = "ferretdb"
    kind = "MongoDB server"

    @property
    def title(self) -> str:
        return f"FerretDB {FERRETDB_VERSION} (SQLite)"

    @property
    def port(self) -> int:
        return _env_int("MYNUMBER_MONGODB_PORT", DEFAULT_MONGODB_PORT)

    @property
    def url(self) -> str:
        return f"mongodb://{HOST}:{self.port}/"

    @property
    def tls_port(self) -> int:
        return _env_int("MYNUMBER_MONGODB_TLS_PORT", self.port + 1)

    def extra_ports(self) -> list[int]:
        return [self.tls_port]

    @property
    def tls_url(self) -> str:
        """The TLS listener, for a client that trusts only the stack's CA and checks the name."""
        query = urllib.parse.urlencode({"tls": "true", "tlsCAFile": str(self.ca_file)})
        return f"mongodb://{HOST}:{self.tls_port}/?{query}"

    @property
    def sqlite_dir(self) -> Path:
        return self.data_dir / "sqlite"

    @property
    def marker(self) -> str:
        return f"--sqlite-url=file:{urllib.parse.quote(str(self.sqlite_dir))}/"

    def provision(self) -> None:
        ensure_ferretdb()

    def prepare(self) -> None:
        self.sqlite_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "state").mkdir(parents=True, exist_ok=True)
        tls.server_tls(self.tls_dir)

    def command(self) -> list[str]:
        certificate = self.tls_dir / tls.SERVER_FILE  # Go reads the certificates and the key from one PEM file
        return [
            str(ferretdb_binary()),
            "--handler=sqlite",
            self.marker,
            f"--listen-addr={HOST}:{self.port}",
            f"--listen-tls={HOST}:{self.tls_port}",
            f"--listen-tls-cert-file={certificate}",
            f"--listen-tls-key-file={certificate}",
            "--debug-addr=-",  # no debug/metrics HTTP listener
            f"--state-dir={self.data_dir / 'state'}",
            "--telemetry=disable",
            "--log-level=info",
            "--log-format=text",
        ]

    def environment(self) -> dict[str, str]:
        # Go's collector runs each time the heap doubles (GOGC=100). FerretDB's live heap is small
        # and every command decodes its documents afresh, so it collected all the time; at 400 the
        # insurance flow went from 497 to 604 links/s and FerretDB held about 100 MB under load
        # (docs/performance.md, finding 1). An operator's own GOGC wins.
        return {**os.environ, "GOGC": os.environ.get("GOGC") or FERRETDB_GOGC}

    def probe(self) -> bool:
        return _mongodb_answers(self.url)


def _kafka_uuid() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding."""
    import base64

    while True:
        value = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
        if not value.startswith("-"):
            return value


def _kafka_answers(client_kwargs: dict[str, Any], timeout: float = 8.0) -> bool:
    """True when the broker answers a metadata / describe-cluster request."""
    from aiokafka.admin import AIOKafkaAdminClient

    async def check() -> bool:
        admin = AIOKafkaAdminClient(request_timeout_ms=int(timeout * 1000), **client_kwargs)
        try:
            await asyncio.wait_for(admin.start(), timeout)
            cluster = await asyncio.wait_for(admin.describe_cluster(), timeout)
            return bool(cluster.get("brokers"))
        finally:
            with contextlib.suppress(Exception):
                await admin.close()

    with _quiet_logger("aiokafka"):
        return bool(_run_async(check))


def _mongodb_answers(url: str, timeout: float = 3.0) -> bool:
    from pymongo import MongoClient

    client: Any = MongoClient(
        url,
        serverSelectionTimeoutMS=int(timeout * 1000),
        connectTimeoutMS=int(timeout * 1000),
        socketTimeoutMS=int(timeout * 1000),
        directConnection=True,
    )
    try:
        return client.admin.command("ping").get("ok") == 1
    finally:
        client.close()


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------


def _servers(secure: bool) -> list[_Server]:
    return [_Kafka(secure=secure), _FerretDB()]


def _endpoints(secure: bool) -> StackEndpoints:
    kafka, mongo = _Kafka(secure=secure), _FerretDB()
    if not secure:
        return StackEndpoints(kafka_bootstrap=kafka.address, mongodb_url=mongo.url, mongodb_tls_url=mongo.tls_url)
    return StackEndpoints(
        kafka_bootstrap=kafka.address,
        mongodb_url=mongo.url,
        mongodb_tls_url=mongo.tls_url,
        secure=True,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism=SCRAM_MECHANISM,
        kafka_admin_username=SECURE_ADMIN_USER,
        kafka_admin_password=kafka.admin_password(),
        kafka_ca_file=str(kafka.ca_file),
    )


def endpoints(secure: bool = False) -> StackEndpoints:
    """The endpoints ``up(secure)`` serves, without starting anything."""
    return _endpoints(secure)


def _up(servers: list[_Server], timeout: float | None) -> None:
    started = time.monotonic()
    deadline = started + (timeout if timeout is not None else _timeout())
    outcomes = [(server, server.ensure_started()) for server in servers]
    for server, _ in outcomes:
        server.wait_ready(deadline)
    for server, outcome in outcomes:
        if outcome == "external":
            _say(
                f"{server.address} is already served by a process not started by this script "
                f"that answers as a {server.kind}: reusing it"
            )
        else:
            how = "started" if outcome == "started" else f"already running, pid {server.own_pid()}"
            _say(f"{server.title} ready on {server.address} ({how})")


def up(secure: bool = False, *, timeout: float | None = None) -> StackEndpoints:
    """Start (or reuse) Kafka and FerretDB and wait until both answer.

    ``secure=True`` starts the separate SASL/SCRAM + ACL Kafka node (instead of
    the plain one) next to the shared FerretDB.
    """
    started = time.monotonic()
    with _stack_lock():
        _up(_servers(secure), timeout)
    result = _endpoints(secure)
    _say(f"stack up in {time.monotonic() - started:.1f}s")
    _say(f"KAFKA_BOOTSTRAP_SERVERS={result.kafka_bootstrap}")
    _say(f"MONGODB_URL={result.mongodb_url}")
    _say(f"MongoDB over TLS: {result.mongodb_tls_url}")
    if secure:
        kafka = _Kafka(secure=True)
        _say(
            f"secure Kafka admin: SASL_SSL/{SCRAM_MECHANISM} user {SECURE_ADMIN_USER!r}, "
            f"password in {kafka.admin_file}, client properties in {kafka.admin_properties}"
        )
        _say(
            f"secure Kafka CA (clients trust it: MYNUMBER_KAFKA_CA_FILE): {kafka.ca_file}"
        )
    return result


def down(secure: bool = False, *, all_servers: bool = False) -> None:
    """Stop the servers this script started (by the pids in their pid files).

    ``down()`` stops the plain Kafka node and FerretDB; ``down(secure=True)``
    stops only the secure Kafka node (FerretDB is shared with the plain stack);
    ``all_servers=True`` stops all three.
    """
    if all_servers:
        servers: list[_Server] = [_Kafka(secure=True), _Kafka(secure=False), _FerretDB()]
    elif secure:
        servers = [_Kafka(secure=True)]
    else:
        servers = _servers(False)
    with _stack_lock():
        for server in servers:
            outcome = server.stop()
            note = ""
            if outcome.startswith("not running") and _port_open(server.port):
                note = f"; {server.address} is served by a process not started by this script, left alone"
            _say(f"{server.title}: {outcome}{note}")


def status(secure: bool = False) -> dict[str, Any]:
    """State of each server: {"kafka": {...}, "mongodb": {...}}.

    Each entry has name, state ("running" = started by this script,
    "external" = answered by another process, "stopped"), pid, address,
    answers (bool), stale_pid_file and log.
    """
    kafka, mongo = _servers(secure)
    return {"kafka": kafka.status(), "mongodb": mongo.status()}


def _restart(server: _Server, timeout: float | None) -> None:
    with _stack_lock():
        if server.own_pid() is None and _port_open(server.port):
            raise StackError(
                f"{server.address} is served by a process not started by this script; cannot restart {server.title}"
            )
        _say(f"{server.title}: {server.stop()}")
        _up([server], timeout)


def stop_kafka(secure: bool = False) -> None:
    """Stop the Kafka node (fault tests: outage begins)."""
    with _stack_lock():
        server = _Kafka(secure=secure)
        _say(f"{server.title}: {server.stop()}")


def start_kafka(secure: bool = False, *, timeout: float | None = None) -> StackEndpoints:
    """Start the Kafka node again and wait until it answers."""
    with _stack_lock():
        _up([_Kafka(secure=secure)], timeout)
    return _endpoints(secure)


def restart_kafka(secure: bool = False, *, timeout: float | None = None) -> StackEndpoints:
    """Stop the Kafka node by its pid, start it again and wait until it answers."""
    _restart(_Kafka(secure=secure), timeout)
    return _endpoints(secure)


def stop_mongodb() -> None:
    """Stop FerretDB (fault tests: outage begins)."""
    with _stack_lock():
        server = _FerretDB()
        _say(f"{server.title}: {server.stop()}")


def start_mongodb(*, timeout: float | None = None) -> StackEndpoints:
    """Start FerretDB again and wait until it answers."""
    with _stack_lock():
        _up([_FerretDB()], timeout)
    return _endpoints(False)


def restart_mongodb(*, timeout: float | None = None) -> StackEndpoints:
    """Stop FerretDB by its pid, start it again and wait until it answers."""
    _restart(_FerretDB(), timeout)
    return _endpoints(False)


# -- secure node: principals and ACLs ----------------------------------------


def _secure_admin_args() -> list[str]:
    kafka = _Kafka(secure=True)
    if kafka.own_pid() is None and not _port_open(kafka.port):
        raise StackError("the secure Kafka node is not running: call up(secure=True) first")
    return ["--bootstrap-server", kafka.address, "--command-config", str(kafka.write_admin_properties())]


def _principal(principal: str) -> str:
    name = principal.split(":", 1)[1] if principal.startswith("User:") else principal
    if not _NAME_RE.match(name):
        raise ValueError(f"invalid principal name {principal!r}")
    return f"User:{name}"


def wait_sasl_login(name: str, password: str, *, timeout: float = 30.0) -> None:
    """Wait until ``name``/``password`` can authenticate to the secure node."""
    kafka = _Kafka(secure=True)
    kwargs = dict(kafka.client_kwargs(), sasl_plain_username=name, sasl_plain_password=password)
    deadline = time.monotonic() + timeout
    while not _safe(lambda: _kafka_answers(kwargs, timeout=5.0)):
        if time.monotonic() >= deadline:
            raise StackError(f"{name!r} cannot authenticate to the secure Kafka node")
        time.sleep(0.3)


def _safe(check: Callable[[], bool]) -> bool:
    try:
        return bool(check())
    except Exception:  # noqa: BLE001
        return False


def add_principal(name: str, password: str) -> None:
    """Create (or update) a SCRAM-SHA-512 user on the secure Kafka node."""
    name = _principal(name).split(":", 1)[1]
    if not _PASSWORD_RE.match(password):
        raise ValueError("password may only use A-Z a-z 0-9 . _ ~ + - (1-256 characters)")
    _run_kafka_tool(
        "kafka.admin.ConfigCommand",
        [
            *_secure_admin_args(),
            "--alter",
            "--entity-type",
            "users",
            "--entity-name",
            name,
            "--add-config",
            f"{SCRAM_MECHANISM}=[password={password}]",
        ],
    )
    wait_sasl_login(name, password)
    _say(f"secure Kafka: SCRAM user {name!r} ready")


def _add_acls(principal: str, resources: list[list[str]], operations: list[str]) -> None:
    args = [*_secure_admin_args(), "--add", "--allow-principal", principal, "--allow-host", "*"]
    for operation in operations:
        args += ["--operation", operation]
    for resource in resources:
        args += resource
    _run_kafka_tool("org.apache.kafka.tools.AclCommand", args)


def _check_acl_listed(principal: str, resource: list[str]) -> None:
    listing = _run_kafka_tool(
        "org.apache.kafka.tools.AclCommand",
        [*_secure_admin_args(), "--list", "--principal", principal, *resource],
    )
    if principal not in listing:
        raise StackError(f"ACL for {principal} on {resource} not visible:\n{listing}")


def allow_write(principal: str, topic: str, *, create: bool = True) -> None:
    """Let ``principal`` produce to ``topic`` (Write + Describe, and Create so
    that the broker may auto-create it)."""
    principal = _principal(principal)
    operations = ["Write", "Describe"] + (["Create"] if create else [])
    _add_acls(principal, [["--topic", topic]], operations)
    _check_acl_listed(principal, ["--topic", topic])
    _say(f"secure Kafka: {principal} may write to topic {topic!r}")


def allow_read(principal: str, topic: str, group: str) -> None:
    """Let ``principal`` consume ``topic`` in consumer group ``group``."""
    principal = _principal(principal)
    _add_acls(principal, [["--topic", topic], ["--group", group]], ["Read", "Describe"])
    _check_acl_listed(principal, ["--group", group])
    _say(f"secure Kafka: {principal} may read topic {topic!r} in group {group!r}")


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def _print_status(report: dict[str, Any]) -> None:
    for role, entry in report.items():
        pid = entry["pid"] if entry["pid"] is not None else "-"
        stale = " (stale pid file)" if entry["stale_pid_file"] else ""
        print(
            f"{role:8} {entry['name']:55} {entry['state']:8} pid={pid!s:8} "
            f"{entry['address']:21} answers={'yes' if entry['answers'] else 'no'}{stale}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mynumber_cli.native_stack",
        description="Native Kafka (KRaft) + FerretDB (SQLite) stack on 127.0.0.1.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start (or reuse) the servers and wait until they answer")
    p_up.add_argument("--secure", action="store_true", help="the TLS + SASL/SCRAM + ACL Kafka node")
    p_up.add_argument("--timeout", type=float, default=None, help="readiness deadline in seconds")
    p_down = sub.add_parser("down", help="stop the servers this script started")
    p_down.add_argument("--secure", action="store_true", help="stop only the secure Kafka node")
    p_down.add_argument("--all", action="store_true", help="stop all servers, secure node included")
    p_status = sub.add_parser("status", help="show each server's state")
    p_status.add_argument("--secure", action="store_true")
    p_status.add_argument("--json", action="store_true", help="print JSON")
    p_restart = sub.add_parser("restart", help="restart one server (stop by pid, start, wait)")
    p_restart.add_argument("server", choices=["kafka", "mongodb"])
    p_restart.add_argument("--secure", action="store_true")
    args = parser.parse_args(argv)

    try:
        if args.command == "up":
            up(secure=args.secure, timeout=args.timeout)
        elif args.command == "down":
            down(secure=args.secure, all_servers=args.all)
        elif args.command == "status":
            report = status(secure=args.secure)
            if args.json:
                print(json.dumps(report, indent=2))
            else:
                _print_status(report)
        elif args.command == "restart":
            if args.server == "kafka":
                restart_kafka(secure=args.secure)
            else:
                restart_mongodb()
    except StackError as exc:
        print(f"[stack] FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


__all__ = [
    "FERRETDB_VERSION",
    "KAFKA_VERSION",
    "StackEndpoints",
    "StackError",
    "add_principal",
    "allow_read",
    "allow_write",
    "cache_dir",
    "down",
    "endpoints",
    "ensure_ferretdb",
    "ensure_kafka_dist",
    "restart_kafka",
    "restart_mongodb",
    "stack_dir",
    "start_kafka",
    "start_mongodb",
    "status",
    "stop_kafka",
    "stop_mongodb",
    "up",
    "wait_sasl_login",
]


if __name__ == "__main__":
    sys.exit(main())
