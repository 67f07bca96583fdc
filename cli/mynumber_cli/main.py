"""`mynumber`: the operators' and partners' command line (Typer + Rich)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from . import native_stack, processes

app = typer.Typer(help="Operate the My Number event platform.", no_args_is_help=True, pretty_exceptions_enable=False)
stack_app = typer.Typer(help="The real Kafka broker and MongoDB-compatible server, run natively.", no_args_is_help=True)
services_app = typer.Typer(help="The four services (and the bank simulator) as local processes.", no_args_is_help=True)
partners_app = typer.Typer(help="The partner registry: agencies, their keys and what they may publish.", no_args_is_help=True)
dlq_app = typer.Typer(help="Dead-lettered events: inspect and replay after a fix.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(services_app, name="services")
app.add_typer(partners_app, name="partners")
app.add_typer(dlq_app, name="dlq")

console = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def _docker_answers() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        import subprocess

        return subprocess.run(["docker", "info"], capture_output=True, timeout=5).returncode == 0
    except Exception:
        return False


def endpoints() -> tuple[str, str]:
    """Where the servers are: the environment if set, else the native stack's addresses."""
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or os.environ.get("MYNUMBER_KAFKA_BOOTSTRAP_SERVERS")
    mongodb = os.environ.get("MONGODB_URL") or os.environ.get("MYNUMBER_MONGODB_URL")
    if kafka and mongodb:
        return kafka, mongodb
    native = native_stack.endpoints()
    return native.kafka_bootstrap, native.mongodb_url


def kafka_client(kafka: str) -> dict[str, Any]:
    """How the tools connect to Kafka at `kafka`: as the services do, with TLS and SASL when
    MYNUMBER_KAFKA_CA_FILE, MYNUMBER_KAFKA_USERNAME and MYNUMBER_KAFKA_PASSWORD are set."""
    from pydantic import ValidationError

    from services.kit.settings import ServiceSettings

    try:
        return ServiceSettings(kafka_bootstrap_servers=kafka).kafka_client_kwargs()
    except ValidationError as problem:
        raise fail("; ".join(error["msg"] for error in problem.errors())) from None


# --- stack ---------------------------------------------------------------------------------


@stack_app.command("up")
def stack_up(secure: Annotated[bool, typer.Option(help="Also run the TLS + SASL/SCRAM + ACL Kafka node.")] = False) -> None:
    """Start Apache Kafka (KRaft) and FerretDB natively on 127.0.0.1. Idempotent."""
    if _docker_answers():
        console.print("A Docker engine answers: you can also run the full stack with [bold]docker-compose up -d[/].")
    try:
        found = native_stack.up(secure=secure)
    except native_stack.StackError as problem:
        raise fail(str(problem)) from None
    console.print(f"KAFKA_BOOTSTRAP_SERVERS={found.kafka_bootstrap}\nMONGODB_URL={found.mongodb_url}")


@stack_app.command("down")
def stack_down(secure: Annotated[bool, typer.Option(help="Stop only the secure Kafka node.")] = False) -> None:
    """Stop the servers this tool started (by pid)."""
    native_stack.down(secure=secure, all_servers=not secure)


@stack_app.command("status")
def stack_status() -> None:
    """Show whether each server runs and answers."""
    report = native_stack.status()
    table = Table("server", "state", "pid", "address", "answers")
    for entry in report.values():
        table.add_row(str(entry.get("name")), str(entry.get("state")), str(entry.get("pid") or "-"),
                      str(entry.get("address")), "yes" if entry.get("answers") else "no")
    console.print(table)


@stack_app.command("tls-certs")
def stack_tls_certs(
    directory: Annotated[Path, typer.Argument(help="Where to write them; the production profile mounts ./secrets.")] = Path("secrets"),
    kafka_host: Annotated[list[str], typer.Option(help="A name clients reach Kafka by (repeatable).")] = ["kafka", "localhost"],  # noqa: B006 - Typer's list default
    mongodb_host: Annotated[list[str], typer.Option(help="A name clients reach MongoDB by (repeatable).")] = ["mongo", "localhost"],  # noqa: B006
    http_host: Annotated[list[str], typer.Option(help="A name clients reach the services' HTTP APIs by (repeatable).")] = [  # noqa: B006
        "enrollment", "insurance", "benefits", "licensing", "localhost"],
) -> None:
    """Write private CAs and the servers' TLS keys for the compose production profile:
    kafka-tls/ (the broker's key store), mongo-tls/ (mongod's key and certificate) and http-tls/
    (the services' key and certificate)."""
    from . import tls

    kafka_ca = tls.compose_key_store(directory / "kafka-tls", tuple(kafka_host))
    mongo = tls.server_tls(directory / "mongo-tls", tuple(mongodb_host))
    http = tls.server_tls(directory / "http-tls", tuple(http_host))
    console.print(f"Kafka: the key store and its password are in {kafka_ca.parent}; clients trust {kafka_ca} "
                  f"(MYNUMBER_KAFKA_CA_FILE), which names {', '.join(kafka_host)}.")
    console.print(f"MongoDB: mongod's key and certificate are {mongo.server_file}; clients trust {mongo.ca_file} "
                  f"(tlsCAFile in MYNUMBER_MONGODB_URL), which names {', '.join(mongodb_host)}.")
    console.print(f"HTTP APIs: the services' key and certificate are {http.server_file}; clients trust {http.ca_file}, "
                  f"which names {', '.join(http_host)}.")
    console.print("Keep the keys private; the apache/kafka image runs as uid 1000, mongod as uid 999, the services as uid 10001.")


@stack_app.command("acl-script")
def stack_acl_script(
    namespace: Annotated[str, typer.Option()] = "mynumber",
    partners_file: Annotated[Path, typer.Option(help="Partners to give Kafka principals.")] = Path("config/partners.demo.json"),
) -> None:
    """Print the Kafka users and ACLs of the platform's policy as a script for the apache/kafka image."""
    from . import acls

    print(acls.shell_script(namespace, json.loads(partners_file.read_text(encoding="utf-8"))), end="")


# --- services ------------------------------------------------------------------------------


def _services_up(extra_env: dict[str, str] | None = None) -> None:
    kafka, mongodb = endpoints()
    try:
        answers = native_stack._kafka_answers({"bootstrap_servers": kafka}, timeout=5.0)
    except Exception:  # the readiness probe may raise instead of answering False
        answers = False
    if not answers:
        raise fail(f"Kafka does not answer at {kafka}: run `mynumber stack up` first")
    env = processes.environment(kafka, mongodb, extra_env)
    for process in processes.available():
        processes.start(process, env)
    waiting = processes.wait_healthy(processes.available())
    if waiting:
        names = ", ".join(p.name for p in waiting)
        raise fail(f"not healthy: {names}; see the logs in {processes.log_file(waiting[0]).parent}")


@services_app.command("up")
def services_up() -> None:
    """Start the bank simulator and the four services, and wait until each is ready."""
    _services_up()
    services_status()


@services_app.command("down")
def services_down() -> None:
    """Stop the services this tool started."""
    for process in reversed(processes.ALL):
        if processes.stop(process):
            console.print(f"stopped {process.name}")


@services_app.command("status")
def services_status() -> None:
    """Show each service: pid, URL, health, log file."""
    table = Table("service", "pid", "url", "ready", "log")
    for entry in processes.status():
        table.add_row(str(entry["name"]), str(entry["pid"] or "-"), str(entry["url"]),
                      "[green]yes[/]" if entry["healthy"] else "[red]no[/]", str(entry["log"]))
    console.print(table)


# --- partners ------------------------------------------------------------------------------


def _registry():
    from pymongo import AsyncMongoClient

    from services.kit.security import PartnerRegistry

    _, mongodb = endpoints()
    namespace = os.environ.get("MYNUMBER_TOPIC_NAMESPACE", "mynumber")
    database = os.environ.get("MYNUMBER_PARTNER_REGISTRY_DATABASE") or f"{namespace}_partners"
    client = AsyncMongoClient(mongodb, serverSelectionTimeoutMS=5000, tz_aware=True)
    return client, PartnerRegistry(client[database], cache_seconds=0)


def _run(coroutine):
    try:
        return asyncio.run(coroutine)
    except Exception as problem:
        if type(problem).__name__ in ("ServerSelectionTimeoutError", "ConnectionFailure", "AutoReconnect"):
            raise fail("the database does not answer: run `mynumber stack up` first") from None
        raise


@partners_app.command("list")
def partners_list() -> None:
    """List the registered partner agencies."""

    async def main():
        client, registry = _registry()
        try:
            return await registry.all()
        finally:
            await client.close()

    table = Table("partner", "type", "keys", "may publish", "delegated by")
    for partner in sorted(_run(main()), key=lambda p: p.partner_id):
        keys = ", ".join(f"{k.key_id} ({k.status})" for k in partner.keys)
        table.add_row(partner.partner_id, str(partner.type), keys, str(len(partner.allowed_event_types)),
                      partner.delegating_municipality or "")
    console.print(table)


@partners_app.command("seed")
def partners_seed(
    file: Annotated[Path, typer.Argument(help="A JSON list of partners (see config/partners.demo.json).")],
    keys_dir: Annotated[Path, typer.Option(help="Where to create (or find) each partner's private key.")] = Path(".stack/partner-keys"),
) -> None:
    """Register the partners of a seed file, creating a key pair for each that has none."""
    from . import partner_keys

    count = _run(partner_keys.seed_registry(file, keys_dir, _registry))
    console.print(f"registered {count} partners; private keys in {keys_dir}")


@partners_app.command("rotate-key")
def partners_rotate_key(
    partner_id: str,
    new_key_id: Annotated[str, typer.Option(help="Id of the new key.")],
    retire: Annotated[str | None, typer.Option(help="Key id to retire once the new key is in.")] = None,
    keys_dir: Annotated[Path, typer.Option()] = Path(".stack/partner-keys"),
) -> None:
    """Generate a new key for a partner, register it, and optionally retire the old one."""
    from . import partner_keys

    _run(partner_keys.rotate(partner_id, new_key_id, retire, keys_dir, _registry))
    console.print(f"{partner_id}: key {new_key_id} active" + (f", {retire} retired" if retire else ""))


# --- publish -------------------------------------------------------------------------------


@app.command()
def publish(
    file: Annotated[Path, typer.Argument(help="Newline-delimited JSON: one {\"type\", \"data\", \"subject\"} per line.")],
    as_agency: Annotated[str, typer.Option("--as", help="The publishing agency's partner id, e.g. municipality/131016.")],
    key: Annotated[Path | None, typer.Option(help="The agency's Ed25519 private key (PEM).")] = None,
    key_id: Annotated[str | None, typer.Option(help="The key id registered for that key.")] = None,
    namespace: Annotated[str, typer.Option(help="Topic namespace.")] = "mynumber",
) -> None:
    """Validate partner events against the contracts, sign them and publish them."""
    from . import publishing

    try:
        records = publishing.load(file, as_agency)
    except publishing.InputError as problem:
        raise fail(str(problem)) from None
    key_path = key or Path(".stack/partner-keys") / f"{as_agency.replace('/', '__')}.pem"
    if not key_path.exists():
        raise fail(f"no private key at {key_path}: pass --key (and --key-id)")
    kafka, _ = endpoints()
    try:
        sent = asyncio.run(publishing.send(records, kafka_client(kafka), key_path, key_id or f"{as_agency}#1", namespace))
    except publishing.InputError as problem:
        raise fail(str(problem)) from None
    console.print(f"published {sent} signed events as {as_agency}")


# --- person ------------------------------------------------------------------------------


def _operator_token() -> str:
    from services.kit.settings import ServiceSettings

    for entry in ServiceSettings().api_token_list().split(","):
        principal, _, token = entry.partition("=")
        if principal.strip() == "operator":
            return token.strip()
    raise fail("no operator token in MYNUMBER_HTTP_API_TOKENS")


@app.command()
def person(number: Annotated[str, typer.Argument(help="The Individual Number (12 digits).")]) -> None:
    """Operator lookup across the four services: the resident (number masked), cards, and every audit trail."""
    from mynumber_contracts import MyNumber

    from services.kit.people import PersonReferences
    from services.kit.settings import ServiceSettings

    try:
        my_number = MyNumber(number)
    except ValueError as problem:
        raise fail(str(problem)) from None
    person_ref = PersonReferences(ServiceSettings().person_ref_key.get_secret_value()).for_number(my_number)
    from . import lookup

    try:
        found = lookup.person(person_ref, _operator_token())
    except lookup.ServiceDown as problem:
        raise fail(str(problem)) from None
    lookup.render(found, my_number, console)


# --- operator commands ---------------------------------------------------------------------

SWEEPS = (
    ("enrollment", "/operator/expiry-sweep", "cards past their expiry date"),
    ("enrollment", "/operator/certificate-retention-sweep", "certificate PDFs and verification codes past their periods"),
    ("insurance", "/operations/certificate-renewal", "eligibility certificates renewed before they lapse"),
    ("insurance", "/operations/certificate-expiry", "eligibility certificates ended"),
    ("benefits", "/operations/opt-out-sweep", "pension accounts past their 45-day reply period"),
)


def _operator_post(service: str, path: str, params: dict[str, str] | None = None) -> dict:
    import httpx

    url = processes.service(service).url + path
    try:
        answer = httpx.post(url, params=params, headers={"Authorization": f"Bearer {_operator_token()}"}, timeout=120)
    except httpx.ConnectError:
        raise fail(f"the {service} service does not answer at {url}: run `mynumber services up` first") from None
    if answer.status_code != 200:
        raise fail(f"{service} answered {answer.status_code}: {answer.text[:300]}")
    return answer.json()


@app.command()
def sweeps(as_of: Annotated[str | None, typer.Option(help="Run as of this date (YYYY-MM-DD); default today.")] = None) -> None:
    """Run every scheduled sweep once: card expiry, certificate retention, insurance certificate renewal and expiry,
    the opt-out route. Safe to rerun."""
    params = {"as_of": as_of} if as_of else None
    table = Table("service", "sweep", "result")
    for service, path, what in SWEEPS:
        table.add_row(service, what, json.dumps(_operator_post(service, path, params), ensure_ascii=False)[:120])
    console.print(table)


@app.command("rotate-number-keys")
def rotate_number_keys() -> None:
    """Re-encrypt every stored Individual Number under the current key (MYNUMBER_ENROLLMENT_NUMBER_KEYS, first entry)."""
    console.print_json(json.dumps(_operator_post("enrollment", "/operator/number-keys/rotate")))


# --- dead letters --------------------------------------------------------------------------


@dlq_app.command("list")
def dlq_list(
    service: Annotated[str, typer.Argument(help="enrollment, insurance, benefits or licensing")],
    namespace: Annotated[str, typer.Option()] = "mynumber",
) -> None:
    """List a service's dead-lettered events."""
    from . import dead_letters

    kafka, _ = endpoints()
    letters = _run(dead_letters.read(kafka_client(kafka), service, namespace))
    table = Table("#", "reason", "source", "type", "detail")
    for letter in letters:
        table.add_row(str(letter.number), letter.reason, f"{letter.source_topic}@{letter.partition}:{letter.offset}",
                      letter.event_type or "-", letter.detail[:80])
    console.print(table)
    console.print(f"{len(letters)} dead-lettered events")


@dlq_app.command("show")
def dlq_show(service: str, number: int, namespace: Annotated[str, typer.Option()] = "mynumber") -> None:
    """Show one dead-lettered event: reason, where it came from, its headers and bytes."""
    from . import dead_letters

    kafka, _ = endpoints()
    letter = dead_letters.pick(_run(dead_letters.read(kafka_client(kafka), service, namespace)), number)
    if letter is None:
        raise fail(f"no dead letter #{number} for {service}")
    console.print_json(json.dumps(letter.describe(), ensure_ascii=False))


@dlq_app.command("replay")
def dlq_replay(
    service: str,
    number: int,
    operator: Annotated[str, typer.Option(help="Who replays it (recorded).")] = os.environ.get("USER", "operator"),
    namespace: Annotated[str, typer.Option()] = "mynumber",
) -> None:
    """Send a dead-lettered event back to its source topic, exactly as it was, and record the replay."""
    from . import dead_letters

    kafka, mongodb = endpoints()
    client = kafka_client(kafka)
    letter = dead_letters.pick(_run(dead_letters.read(client, service, namespace)), number)
    if letter is None:
        raise fail(f"no dead letter #{number} for {service}")
    _run(dead_letters.replay(letter, client, mongodb, operator=operator))
    console.print(f"replayed #{number} to {letter.source_topic}")


# --- demo ----------------------------------------------------------------------------------


@app.command()
def demo(
    residents: Annotated[int, typer.Option(help="How many residents the simulated day has.")] = 500,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic population and traffic.")] = 2026,
    keep_running: Annotated[bool, typer.Option(help="Leave the services running afterwards.")] = False,
) -> None:
    """The main job: the real stack, the four services, a simulated day of partner traffic, a report."""
    from . import demo as demo_day

    try:
        demo_day.main(residents, seed, keep_running)
    except RuntimeError as problem:
        raise fail(str(problem)) from None


# --- docs ----------------------------------------------------------------------------------


@app.command()
def docs() -> None:
    """Generate the AsyncAPI document and page, and the OpenAPI documents, into docs/."""
    from services import documentation

    for path in documentation.write():
        console.print(f"wrote {path}")
    try:
        pages = documentation.write_site()
    except RuntimeError as problem:
        raise fail(str(problem)) from None
    console.print(f"wrote {len(pages)} files to {documentation.SITE}; open {documentation.SITE / 'index.html'}")


def run() -> None:  # pragma: no cover - console entry point
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    app()
