"""Partner key pairs and the registry seed, for the demo and for operators."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from mynumber_contracts.partners import Partner, PartnerKey, PartnerType, default_permissions
from mynumber_contracts.signing import (
    generate_private_key,
    private_key_from_pem,
    private_key_to_pem,
    public_key_to_text,
)


def key_path(keys_dir: Path, partner_id: str) -> Path:
    return keys_dir / f"{partner_id.replace('/', '__')}.pem"


def load_or_create_key(keys_dir: Path, partner_id: str):
    path = key_path(keys_dir, partner_id)
    if path.exists():
        return private_key_from_pem(path.read_bytes())
    keys_dir.mkdir(parents=True, exist_ok=True)
    key = generate_private_key()
    path.write_bytes(private_key_to_pem(key))
    path.chmod(0o600)
    return key


def partners_from_seed(file: Path, keys_dir: Path) -> list[Partner]:
    """Read a seed file; each entry gets key `<id>#1` from `keys_dir` (created if missing)."""
    entries = json.loads(file.read_text(encoding="utf-8"))
    partners = []
    for entry in entries:
        partner_type = PartnerType(entry["type"])
        key = load_or_create_key(keys_dir, entry["partner_id"])
        allowed = entry.get("allowed_event_types") or default_permissions(partner_type)
        partners.append(
            Partner(
                partner_id=entry["partner_id"], type=partner_type, name=entry.get("name", ""),
                keys=[PartnerKey(key_id=f"{entry['partner_id']}#1", public_key=public_key_to_text(key.public_key()),
                                 added_at=datetime.now(UTC))],
                allowed_event_types=allowed, delegating_municipality=entry.get("delegating_municipality"),
            )
        )
    return partners


async def seed_registry(file: Path, keys_dir: Path, open_registry) -> int:
    client, registry = open_registry()
    try:
        return await registry.seed(partners_from_seed(file, keys_dir))
    finally:
        await client.close()


async def rotate(partner_id: str, new_key_id: str, retire: str | None, keys_dir: Path, open_registry) -> None:
    client, registry = open_registry()
    try:
        if await registry.get(partner_id, fresh=True) is None:
            raise ValueError(f"{partner_id} is not registered")
        path = keys_dir / f"{partner_id.replace('/', '__')}.{new_key_id.split('#')[-1]}.pem"
        key = generate_private_key()
        keys_dir.mkdir(parents=True, exist_ok=True)
        path.write_bytes(private_key_to_pem(key))
        path.chmod(0o600)
        await registry.add_key(partner_id, new_key_id, public_key_to_text(key.public_key()))
        if retire:
            await registry.retire_key(partner_id, retire)
    finally:
        await client.close()
