"""TLS material for a server: a private certificate authority and a server certificate it signs.

The native stack uses it on 127.0.0.1: the secure Kafka node reads `server.pem` (its private key,
PKCS#8, then its certificate and the CA's) as a PEM key store, and FerretDB's TLS listener reads the
same kind of file. `mynumber stack tls-certs` writes such pairs for the compose production profile,
plus the PKCS#12 key store and password files that the apache/kafka image asks for. Clients trust
`ca.pem` (`MYNUMBER_KAFKA_CA_FILE`, `tlsCAFile` in `MYNUMBER_MONGODB_URL`).
"""

from __future__ import annotations

import datetime
import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path

CA_FILE = "ca.pem"
SERVER_FILE = "server.pem"
VALID_DAYS = 825  # the longest a publicly trusted server certificate may live; renewed before it ends
RENEW_BEFORE = datetime.timedelta(days=30)


@dataclass(frozen=True)
class ServerTls:
    ca_file: Path  # the CA certificate clients trust
    server_file: Path  # the server's private key and certificate chain (keep it private)


def _name(common_name: str):  # noqa: ANN202 - a cryptography Name
    from cryptography.x509 import Name, NameAttribute
    from cryptography.x509.oid import NameOID

    return Name([NameAttribute(NameOID.ORGANIZATION_NAME, "mynumber platform"), NameAttribute(NameOID.COMMON_NAME, common_name)])


def _still_good(directory: Path, hosts: tuple[str, ...], now: datetime.datetime) -> bool:
    from cryptography import x509

    try:
        chain = x509.load_pem_x509_certificates((directory / SERVER_FILE).read_bytes())
        x509.load_pem_x509_certificate((directory / CA_FILE).read_bytes())
    except (OSError, ValueError):
        return False
    names = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    covered = {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} | set(names.get_values_for_type(x509.DNSName))
    return set(hosts) <= covered and chain[0].not_valid_after_utc - now > RENEW_BEFORE


def server_tls(directory: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> ServerTls:
    """The CA and server certificate in `directory`, made (again) when missing, expiring within 30
    days, or not naming every one of `hosts` (IP addresses or DNS names the clients connect to)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    now = datetime.datetime.now(datetime.UTC)
    files = ServerTls(directory / CA_FILE, directory / SERVER_FILE)
    if _still_good(directory, hosts, now):
        return files
    directory.mkdir(parents=True, exist_ok=True)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=VALID_DAYS)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("mynumber platform CA")
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def san(host: str) -> x509.GeneralName:
        try:
            return x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            return x509.DNSName(host)

    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder().subject_name(_name(hosts[0])).issuer_name(ca_name).public_key(server_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([san(host) for host in hosts]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    # The CA's key is not kept: nothing else is ever signed with it, and a new pair replaces both.
    key = server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    pem = serialization.Encoding.PEM
    files.server_file.write_bytes(b"")
    files.server_file.chmod(0o600)
    files.server_file.write_bytes(key + server.public_bytes(pem) + ca.public_bytes(pem))
    files.ca_file.write_bytes(ca.public_bytes(pem))
    return files


KEYSTORE_FILE = "kafka.keystore.p12"
KEYSTORE_PASSWORD_FILE = "kafka.keystore.password"  # the image reads the key's and the store's password from files
KEY_PASSWORD_FILE = "kafka.key.password"


def compose_key_store(directory: Path, hosts: tuple[str, ...] = ("kafka", "localhost")) -> Path:
    """The files the compose production profile mounts at /etc/kafka/secrets: the CA and broker
    certificate for `hosts` (made as `server_tls` makes them), and the broker's PKCS#12 key store
    with a new password (one for the store and the key, as Java's PKCS#12 wants) in the password
    files. Returns the CA file the services trust."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    files = server_tls(directory, hosts)
    pem = files.server_file.read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    certificate, *chain = x509.load_pem_x509_certificates(pem)
    password = secrets.token_urlsafe(24)
    store = pkcs12.serialize_key_and_certificates(
        b"kafka", key, certificate, chain,  # type: ignore[arg-type]
        serialization.BestAvailableEncryption(password.encode()),
    )
    for name, content in ((KEYSTORE_FILE, store), (KEYSTORE_PASSWORD_FILE, password.encode()), (KEY_PASSWORD_FILE, password.encode())):
        path = directory / name
        path.write_bytes(b"")
        path.chmod(0o600)
        path.write_bytes(content)
    return files.ca_file
