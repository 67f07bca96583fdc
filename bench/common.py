"""What every benchmark shares: the servers, a fresh namespace per benchmark, bench partners
with their own Ed25519 keys, pre-signed input, services run as real subprocesses (with their
peak RSS), a reader that timestamps every fact, consumer lag, and the result files."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mynumber_contracts import Event, KafkaRecord, encode_event, topics
from mynumber_contracts.partners import Partner, PartnerKey, PartnerType, partner_type_of
from mynumber_contracts.signing import generate_private_key, public_key_to_text, sign_record

from services.kit.messaging import PRODUCER_SETTINGS
from services.kit.messaging import create_topics as kit_create_topics

from .config import Scale

REPO = Path(__file__).resolve().parents[1]
BENCH_TOKEN = "bench-token-0123456789abcdef"
BENCH_PRINCIPAL = "medical-institution/1312345678"  # the eligibility check is for medical institutions
OPERATOR_TOKEN = "operator-token-0123456789abcdef"


@dataclass
class Context:
    """One run of the suite: where the servers are, how big, where results go."""

    kafka: str
    mongodb: str
    scale: Scale
    out: Path
    profile: bool = False
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def logs(self) -> Path:
        path = self.out / "logs"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def profiles(self) -> Path:
        path = self.out / "profiles"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def namespace(self, bench: str) -> str:
        # Topic names allow [a-zA-Z0-9._-]; databases take the namespace as a prefix.
        return f"b{self.run_id}{bench.replace('_', '')[:18]}"


def environment() -> dict[str, Any]:
    try:
        import psutil

        memory = round(psutil.virtual_memory().total / 2**20)
    except ImportError:
        memory = _status_field_mb(0, "MemTotal", "/proc/meminfo")
    return {
        "cpus": os.cpu_count(),
        "memory_mb": memory,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "kernel": platform.release(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


# -- results ---------------------------------------------------------------------------------


def write_result(ctx: Context, name: str, result: dict[str, Any]) -> Path:
    result = {"name": name, "mode": ctx.scale.mode, "written_at": datetime.now(UTC).isoformat(), **result}
    ctx.out.mkdir(parents=True, exist_ok=True)
    path = ctx.out / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
    return path


def not_available(reason: str) -> dict[str, Any]:
    return {"status": "not_available", "reason": reason, "metrics": {}, "targets": {}}


def target(measured: float | None, limit: float, *, at_most: bool = True) -> dict[str, Any]:
    if measured is None:
        return {"target": limit, "measured": None, "met": False, "kind": "max" if at_most else "min"}
    met = measured <= limit if at_most else measured >= limit
    return {"target": limit, "measured": round(measured, 4), "met": met, "kind": "max" if at_most else "min"}


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p90": None, "p99": None, "max": None, "mean": None, "count": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": ordered[-1],
            "mean": sum(ordered) / len(ordered), "count": len(ordered)}


def censored_percentiles(values: Sequence[float], missing: int) -> dict[str, Any]:
    """Percentiles over observed values plus `missing` ones known only to exceed every observed value
    (facts not seen before the deadline): a percentile that falls among the missing is None, and
    `lower_bound_ms` says what it exceeds."""
    ordered = sorted(values)
    total = len(ordered) + missing
    if total == 0:
        return {"p50": None, "p90": None, "p99": None, "max": None, "mean": None, "count": 0, "missing": 0}

    def at(q: float) -> float | None:
        index = min(total - 1, max(0, round(q * (total - 1))))
        return ordered[index] if index < len(ordered) else None

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99),
            "max": None if missing else (ordered[-1] if ordered else None),
            "mean": sum(ordered) / len(ordered) if ordered and not missing else None,
            "count": len(ordered), "missing": missing, "max_observed": ordered[-1] if ordered else None}


def cdf_points(values: Sequence[float], points: int = 200) -> list[list[float]]:
    """[value, fraction] pairs along the empirical CDF, for the plot (not every sample)."""
    if not values:
        return []
    ordered = sorted(values)
    n = len(ordered)
    picks = sorted({min(n - 1, round(i * (n - 1) / (points - 1))) for i in range(points)})
    return [[ordered[i], (i + 1) / n] for i in picks]


def timeline(times: Sequence[float], start: float, bucket: float = 1.0) -> list[list[float]]:
    """[seconds since start, events per second] per bucket."""
    if not times:
        return []
    end = max(times)
    buckets = [0] * (int((end - start) // bucket) + 1)
    for t in times:
        buckets[max(0, int((t - start) // bucket))] += 1
    return [[round(i * bucket, 3), count / bucket] for i, count in enumerate(buckets)]


# -- servers ---------------------------------------------------------------------------------


async def create_topics(ctx: Context, names: Iterable[str], partitions: int = topics.PARTITIONS) -> None:
    names = list(names)
    await kit_create_topics({"bootstrap_servers": ctx.kafka}, names, partitions=partitions)
    await wait_for_topics(ctx, names)


async def wait_for_topics(ctx: Context, names: Sequence[str], timeout: float = 30.0) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=ctx.kafka, group_id=None)
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        while True:
            cluster = await consumer._client.fetch_all_metadata()
            if all(cluster.partitions_for_topic(n) for n in names) or time.monotonic() > deadline:
                return
            await asyncio.sleep(0.2)
    finally:
        await consumer.stop()


async def delete_namespace(ctx: Context, namespace: str) -> None:
    """Delete the namespace's topics and databases, so a run leaves nothing behind."""
    from pymongo import AsyncMongoClient

    admin = AIOKafkaAdminClient(bootstrap_servers=ctx.kafka)
    try:
        await admin.start()
        doomed = [t for t in await admin.list_topics() if t.startswith(f"{namespace}.")]
        if doomed:
            await admin.delete_topics(doomed)
    except Exception as exc:  # cleanup never fails a benchmark
        print(f"  cleanup of topics {namespace}.* failed: {exc!r}", file=sys.stderr)
    finally:
        await admin.close()
    client: AsyncMongoClient = AsyncMongoClient(ctx.mongodb, serverSelectionTimeoutMS=5000)
    try:
        for database in await client.list_database_names():
            if database.startswith(f"{namespace}_"):
                await client.drop_database(database)
    except Exception as exc:
        print(f"  cleanup of databases {namespace}_* failed: {exc!r}", file=sys.stderr)
    finally:
        await client.close()


def producer(ctx: Context, **overrides: Any) -> AIOKafkaProducer:
    """A producer configured like the kit's (acks=all, idempotent, the kit's linger)."""
    options: dict[str, Any] = dict(bootstrap_servers=ctx.kafka, **PRODUCER_SETTINGS)
    options.update(overrides)
    return AIOKafkaProducer(**options)


async def publish_all(ctx: Context, topic_records: Sequence[tuple[str, KafkaRecord]]) -> float:
    """Publish pre-built records as fast as the producer takes them; returns the seconds it took."""
    async with _started(producer(ctx)) as p:
        started = time.monotonic()
        futures = [await p.send(topic, r.value, key=r.key, headers=r.headers) for topic, r in topic_records]
        await asyncio.gather(*futures)
        return time.monotonic() - started


class _started:
    def __init__(self, client: Any) -> None:
        self.client = client

    async def __aenter__(self) -> Any:
        await self.client.start()
        return self.client

    async def __aexit__(self, *exc: object) -> None:
        await self.client.stop()


# -- partners --------------------------------------------------------------------------------


class BenchPartners:
    """Partner agencies with keys made for this run, registered in the namespace's partner registry."""

    def __init__(self, ctx: Context, namespace: str) -> None:
        self.ctx = ctx
        self.namespace = namespace
        self._keys: dict[str, tuple[Ed25519PrivateKey, str]] = {}

    def key_for(self, source: str) -> tuple[Ed25519PrivateKey, str]:
        if source not in self._keys:
            self._keys[source] = (generate_private_key(), f"{source}#bench-1")
        return self._keys[source]

    async def register(self, sources: Iterable[str]) -> None:
        from pymongo import AsyncMongoClient

        client: AsyncMongoClient = AsyncMongoClient(self.ctx.mongodb, serverSelectionTimeoutMS=5000)
        try:
            collection = client[f"{self.namespace}_partners"]["partners"]
            for source in sources:
                key, key_id = self.key_for(source)
                partner_type = partner_type_of(source) or PartnerType.municipality
                partner = Partner(
                    partner_id=source, type=partner_type, name=f"bench partner {source}",
                    keys=[PartnerKey(key_id=key_id, public_key=public_key_to_text(key.public_key()),
                                     added_at=datetime.now(UTC))],
                    allowed_event_types=["*"],
                    delegating_municipality="131016" if partner_type is PartnerType.post_office else None,
                )
                document = partner.model_dump(mode="json", exclude={"partner_id"})
                await collection.replace_one({"_id": source}, document, upsert=True)
        finally:
            await client.close()

    def request(self, payload: Event, *, source: str, subject: str, event_id: str | None = None) -> KafkaRecord:
        """A signed partner request, exactly as an agency would send it."""
        record = encode_event(payload, source=source, key=topics.ordering_key(subject),
                              event_id=event_id or str(uuid.uuid4()), time=datetime.now(UTC))
        return sign_record(record, *self.key_for(source))


def service_fact(payload: Event, *, source_service: str = "enrollment") -> KafkaRecord:
    """A fact as another service publishes it (facts are not partner-signed)."""
    return encode_event(payload, source=f"service/{source_service}", key=payload.partition_key(),  # type: ignore[attr-defined]
                        event_id=str(uuid.uuid4()), time=datetime.now(UTC))


# -- services as subprocesses ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_available(name: str) -> str | None:
    """None when `services.<name>` can be built; otherwise why not."""
    if not (REPO / "services" / name / "app.py").exists() or not (REPO / "services" / name / "__main__.py").exists():
        return f"services/{name} does not exist (yet)"
    probe = subprocess.run([sys.executable, "-c", f"import services.{name}.app, services.{name}.__main__"],
                           cwd=REPO, capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        return f"services.{name} does not import: {probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else '?'}"
    return None


class RssSampler:
    """Samples a process's resident set size every 0.2 s; peak = max(samples, the kernel's VmHWM)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, float]] = []  # (monotonic, MB)
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = _rss_mb(self.pid)
            if rss is None:
                return
            self.samples.append((time.monotonic(), rss))
            self.peak_mb = max(self.peak_mb, rss)
            self._stop.wait(0.2)

    def stop(self) -> None:
        hwm = _vm_hwm_mb(self.pid)
        if hwm is not None:
            self.peak_mb = max(self.peak_mb, hwm)
        self._stop.set()
        self._thread.join(timeout=2)


def _rss_mb(pid: int) -> float | None:
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss / 2**20
    except ImportError:
        return _status_field_mb(pid, "VmRSS")
    except Exception:
        return None


def _vm_hwm_mb(pid: int) -> float | None:
    return _status_field_mb(pid, "VmHWM")


def _status_field_mb(pid: int, name: str, path: str | None = None) -> float | None:
    try:
        for line in Path(path or f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@dataclass
class ServiceProcess:
    """`python -m services.<name>` with MYNUMBER_* settings for one namespace, its log, its RSS."""

    ctx: Context
    name: str
    namespace: str
    label: str
    extra_env: dict[str, str] = field(default_factory=dict)
    module: tuple[str, ...] = ()
    health_path: str = "/ready"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    rss: RssSampler | None = None
    profiler: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.ctx.logs / f"{self.label}-{self.name}.log"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MYNUMBER_")}
        env.update({
            "MYNUMBER_KAFKA_BOOTSTRAP_SERVERS": self.ctx.kafka,
            "MYNUMBER_MONGODB_URL": self.ctx.mongodb,
            "MYNUMBER_TOPIC_NAMESPACE": self.namespace,
            "MYNUMBER_HTTP_HOST": "127.0.0.1",
            "MYNUMBER_HTTP_PORT": str(self.port),
            "MYNUMBER_LOG_LEVEL": "WARNING",
            "MYNUMBER_API_TOKENS": f"{BENCH_PRINCIPAL}={BENCH_TOKEN},operator={OPERATOR_TOKEN}",
            "MYNUMBER_HTTP_API_TOKENS": f"{BENCH_PRINCIPAL}={BENCH_TOKEN},operator={OPERATOR_TOKEN}",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")])),
        })
        env.update(self.extra_env)
        return env

    async def start(self, *, ready_timeout: float = 120.0) -> None:
        import httpx

        command = [sys.executable, "-m", *(self.module or (f"services.{self.name}",))]
        log = open(self.log_path, "ab")  # noqa: SIM115, ASYNC230 - the child owns it for its life
        self.process = subprocess.Popen(command, cwd=REPO, env=self.env(), stdout=log, stderr=subprocess.STDOUT,  # noqa: ASYNC220
                                        start_new_session=True)
        self.rss = RssSampler(self.process.pid)
        self.rss.start()
        deadline = time.monotonic() + ready_timeout
        async with httpx.AsyncClient(timeout=3.0) as http:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log_path}")
                try:
                    if (await http.get(self.url + self.health_path)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} never became ready; see {self.log_path}")
                await asyncio.sleep(0.25)

    def start_profiler(self, tag: str) -> Path | None:
        """Sample the process with py-spy (raw collapsed stacks) until `stop_profiler`."""
        py_spy = Path(sys.executable).with_name("py-spy")
        if self.process is None or not py_spy.exists():
            return None
        output = self.ctx.profiles / f"{tag}-{self.name}.txt"
        self.profiler = subprocess.Popen(
            [str(py_spy), "record", "--format", "raw", "--rate", "100", "--pid", str(self.process.pid),
             "--output", str(output), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=open(self.ctx.logs / f"py-spy-{tag}.log", "ab"))  # noqa: SIM115
        return output

    def stop_profiler(self) -> None:
        if self.profiler is not None and self.profiler.poll() is None:
            import signal

            self.profiler.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                self.profiler.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.profiler.kill()
        self.profiler = None

    def peak_rss_mb(self) -> float | None:
        return round(self.rss.peak_mb, 1) if self.rss and self.rss.peak_mb else None

    def rss_series(self, start: float) -> list[list[float]]:
        return [[round(t - start, 2), round(mb, 1)] for t, mb in (self.rss.samples if self.rss else [])]

    async def stop(self) -> None:
        self.stop_profiler()
        if self.process is None:
            return
        if self.rss:
            self.rss.stop()
        if self.process.poll() is None:
            self.process.terminate()
            for _ in range(100):
                if self.process.poll() is not None:
                    break
                await asyncio.sleep(0.1)
            else:
                self.process.kill()
                self.process.wait()


# -- reading what the services publish --------------------------------------------------------


@dataclass
class Seen:
    at: float  # monotonic time this process received it
    type: str
    causation_id: str | None
    value: bytes


class FactWatcher:
    """Reads topics from their beginning in the background and timestamps every record."""

    def __init__(self, ctx: Context, topic_names: Sequence[str], *, keep_values: bool = False) -> None:
        self.topic_names = list(topic_names)
        self.keep_values = keep_values
        self.seen: list[Seen] = []
        self.by_type: dict[str, int] = {}
        self._consumer = AIOKafkaConsumer(bootstrap_servers=ctx.kafka, group_id=None, enable_auto_commit=False,
                                          auto_offset_reset="earliest", fetch_max_wait_ms=50,
                                          max_partition_fetch_bytes=4 * 1024 * 1024)
        self._task: asyncio.Task[None] | None = None
        self.listeners: list[Callable[[Seen], None]] = []

    async def __aenter__(self) -> FactWatcher:
        await self._consumer.start()
        assigned: list[TopicPartition] = []
        deadline = time.monotonic() + 30
        for name in self.topic_names:
            while True:
                cluster = await self._consumer._client.fetch_all_metadata()
                partitions = cluster.partitions_for_topic(name)
                if partitions or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            if not partitions:
                raise RuntimeError(f"topic {name} does not exist")
            assigned += [TopicPartition(name, p) for p in sorted(partitions)]
        self._consumer.assign(assigned)
        await self._consumer.seek_to_beginning(*assigned)
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=100, max_records=5000)
            now = time.monotonic()
            for records in batch.values():
                for r in records:
                    headers = dict(r.headers or ())
                    kind = (headers.get("ce_type") or headers.get("dlq_reason", b"?")).decode(errors="replace")
                    cause = headers.get("ce_causationid")
                    seen = Seen(now, kind, cause.decode() if cause else None, r.value if self.keep_values else b"")
                    self.seen.append(seen)
                    self.by_type[kind] = self.by_type.get(kind, 0) + 1
                    for listener in self.listeners:
                        listener(seen)

    async def __aexit__(self, *exc: object) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self._consumer.stop()

    def count(self, types: Iterable[str]) -> int:
        return sum(self.by_type.get(t, 0) for t in types)

    async def wait_count(self, types: Iterable[str], n: int, *, deadline_seconds: float,
                         stalled_seconds: float = 60.0) -> bool:
        """Wait until `n` records of these types arrived; False at the deadline or when nothing new came for a while."""
        wanted = list(types)
        deadline = time.monotonic() + deadline_seconds
        last, last_change = -1, time.monotonic()
        while True:
            current = self.count(wanted)
            if current >= n:
                return True
            if current != last:
                last, last_change = current, time.monotonic()
            if time.monotonic() > deadline or time.monotonic() - last_change > stalled_seconds:
                return False
            await asyncio.sleep(0.05)


async def consumer_lag(ctx: Context, group: str, topic_names: Sequence[str]) -> int:
    """Messages on these topics that `group` has not committed yet."""
    admin = AIOKafkaAdminClient(bootstrap_servers=ctx.kafka)
    consumer = AIOKafkaConsumer(bootstrap_servers=ctx.kafka, group_id=None)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        cluster = await consumer._client.fetch_all_metadata()
        partitions = [TopicPartition(t, p) for t in topic_names for p in (cluster.partitions_for_topic(t) or ())]
        ends = await consumer.end_offsets(partitions)
        return sum(max(0, ends[tp] - (committed[tp].offset if tp in committed else 0)) for tp in partitions)
    finally:
        await consumer.stop()
        await admin.close()


async def wait_for_settled_group(ctx: Context, group: str, *, deadline_seconds: float) -> bool:
    """True once `group` has been Stable, with the same members, for three looks 0.2 s apart. A
    service that has just started is still joining its consumer group: each consumer that joins
    makes the group rebalance, and a rebalance pauses every consumer in it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=ctx.kafka)
    await admin.start()
    try:
        deadline, seen = time.monotonic() + deadline_seconds, []
        while time.monotonic() < deadline:
            described = (await admin.describe_consumer_groups([group]))[0].to_object()["groups"][0]
            members = len(described["members"])
            seen = [*seen, members][-3:] if described["state"] == "Stable" and members else []
            if len(seen) == 3 and len(set(seen)) == 1:
                return True
            await asyncio.sleep(0.2)
        return False
    finally:
        await admin.close()


async def wait_for_zero_lag(ctx: Context, group: str, topic_names: Sequence[str], *, deadline_seconds: float) -> bool:
    deadline = time.monotonic() + deadline_seconds
    calm = 0
    while time.monotonic() < deadline:
        calm = calm + 1 if await consumer_lag(ctx, group, topic_names) == 0 else 0
        if calm >= 2:
            return True
        await asyncio.sleep(0.5)
    return False


class CpuMeter:
    """CPU seconds spent by the service process, the database server and the broker over a phase:
    where the time of a flow goes when the service itself mostly waits."""

    def __init__(self, ctx: Context, service_pid: int | None) -> None:
        self.pids = {"service": service_pid, "database": _listener_pid(_port(ctx.mongodb)),
                     "broker": _listener_pid(_port(ctx.kafka))}
        self._start: dict[str, float] = {}
        self._began = 0.0

    def start(self) -> None:
        self._began = time.monotonic()
        self._start = {k: v for k, v in ((k, _cpu_seconds(p)) for k, p in self.pids.items()) if v is not None}

    def stop(self) -> dict[str, Any]:
        wall = time.monotonic() - self._began
        used = {k: round(v - self._start[k], 2) for k, v in ((k, _cpu_seconds(p)) for k, p in self.pids.items())
                if v is not None and k in self._start}
        return {"wall_s": round(wall, 2), "cpu_s": used,
                "cores_busy": {k: round(v / wall, 2) for k, v in used.items()} if wall > 0 else {}}


def _port(address: str) -> int | None:
    tail = address.split("//")[-1].split("/")[0].split(",")[0]
    try:
        return int(tail.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return None


def _listener_pid(port: int | None) -> int | None:
    if port is None:
        return None
    try:
        import psutil

        for connection in psutil.net_connections(kind="tcp"):
            if connection.status == psutil.CONN_LISTEN and connection.laddr and connection.laddr.port == port:
                return connection.pid
    except Exception:
        return None
    return None


def _cpu_seconds(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        import psutil

        times = psutil.Process(pid).cpu_times()
        return times.user + times.system + getattr(times, "children_user", 0) + getattr(times, "children_system", 0)
    except Exception:
        return None


def summarise_profile(path: Path | None, top: int = 15) -> dict[str, Any] | None:
    """Top functions of a py-spy raw profile: by own time (leaf) and by inclusive time."""
    if path is None or not path.exists():
        return None
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [f.strip() for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        leaf = _frame_name(frames[-1])
        own[leaf] = own.get(leaf, 0) + count
        for name in {_frame_name(f) for f in frames}:
            inclusive[name] = inclusive.get(name, 0) + count
    if not total:
        return None

    def ranked(table: dict[str, int]) -> list[dict[str, Any]]:
        return [{"function": k, "share": round(v / total, 4)}
                for k, v in sorted(table.items(), key=lambda kv: -kv[1])[:top]]

    return {"samples": total, "file": str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path),
            "top_own": ranked(own), "top_inclusive": ranked(inclusive)}


def _frame_name(frame: str) -> str:
    # py-spy raw frames read "function (path/to/file.py:line)"; keep the function and the file's tail.
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    file = where.rsplit(":", 1)[0]
    parts = Path(file).parts
    short = "/".join(parts[-2:]) if parts else file
    return f"{name} ({short})"
