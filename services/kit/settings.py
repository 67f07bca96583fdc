"""Settings shared by every service, read from the environment with pydantic-settings."""

from __future__ import annotations

import ssl
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# A development-only key, so the demo and tests run out of the box. Production sets its own.
DEVELOPMENT_PERSON_REF_KEY = "development-only-person-reference-key-change-me"
DEVELOPMENT_API_TOKENS = "operator=development-only-operator-token"


class ServiceSettings(BaseSettings):
    """Every variable is prefixed `MYNUMBER_`, e.g. `MYNUMBER_KAFKA_BOOTSTRAP_SERVERS`."""

    model_config = SettingsConfigDict(env_prefix="MYNUMBER_", extra="ignore")

    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers.")
    kafka_username: str = Field("", description="SASL/SCRAM-SHA-512 principal; empty means no SASL (development).")
    kafka_password: SecretStr = Field(SecretStr(""), description="Password of the SASL/SCRAM principal.")
    kafka_ca_file: str = Field(
        "", description="CA certificate (PEM) the broker's certificate must chain to. When set, every Kafka connection "
        "uses TLS and checks the broker's name (SASL_SSL with a principal, SSL without); empty means no TLS (development).",
    )
    mongodb_url: str = Field("mongodb://127.0.0.1:27017/", description="MongoDB (or FerretDB) URL.")
    database: str = Field("", description="Database name; defaults to <namespace>_<service>, e.g. mynumber_enrollment.")
    topic_namespace: str = Field("mynumber", description="Prefix of every topic name.")
    consumer_group: str = Field("", description="Kafka consumer group; defaults to <namespace>-<service>.")
    person_ref_key: SecretStr = Field(
        SecretStr(DEVELOPMENT_PERSON_REF_KEY),
        description="HMAC key that derives pseudonymous person references. Shared by all services.",
    )
    http_api_tokens: SecretStr = Field(
        SecretStr(DEVELOPMENT_API_TOKENS),
        description="Bearer tokens of the HTTP API, 'principal=token,...'; the principal 'operator' may use operator routes.",
    )
    http_api_tokens_file: str = Field("", description="A secret file holding the same list; wins over the variable.")
    http_host: str = Field("127.0.0.1", description="Address the HTTP API listens on.")
    http_port: int = Field(8000, description="Port the HTTP API listens on.")
    http_tls_cert_file: str = Field(
        "", description="The HTTP API's TLS certificate chain (PEM). When set, the API answers only HTTPS; "
        "empty means plain HTTP (development, or TLS ended by a proxy in front).",
    )
    http_tls_key_file: str = Field("", description="The private key (PEM) of that certificate; defaults to the certificate file.")
    log_level: str = Field("INFO", description="Log level.")
    retry_max_seconds: float = Field(10.0, description="Longest back-off between retries of a transient failure.")
    batch_max_records: int = Field(
        500, ge=1, description="Most records taken in at once from one topic: checked, run side by side across "
        "ordering keys (in order within one), recorded in one write and committed together.",
    )
    batch_max_bytes: int = Field(
        512 * 1024, ge=1, description="Most bytes of records run side by side: a larger batch is taken in as "
        "consecutive parts of this size, so large records (payout chunks, about 230 KB) are not all in memory at once.",
    )
    batch_consumers: int = Field(
        2, ge=1, description="Kafka consumers per subscribed topic in one process, in one group, each taking in "
        "batches from the partitions it owns; two keep the database busy while the service checks the next batch.",
    )
    batch_wait_ms: int = Field(
        20, ge=1, description="How long a poll waits for records when none are there yet (FastStream then pauses as "
        "long again before the next poll, so this bounds the added latency at a light load).",
    )
    max_poll_interval_ms: int = Field(600_000, description="How long one batch of records may take before a rebalance.")
    heartbeat_interval_ms: int = Field(
        300, ge=50, le=3_000, description="How often each consumer tells the group it is alive, and so how soon it "
        "learns of a rebalance (a consumer joining or leaving). At most 3 s: the group's session timeout is 10 s, "
        "and Kafka advises at most a third of that.",
    )
    require_signatures: bool = Field(True, description="Quarantine partner requests that are not signed by a registered key.")
    partner_registry_database: str = Field("", description="Database of the partner registry; defaults to <namespace>_partners.")
    partner_cache_seconds: float = Field(5.0, description="How long a partner registry entry is cached.")
    topic_replication_factor: int = Field(1, description="Replication factor of topics the service creates (3 on a cluster).")

    @field_validator("kafka_ca_file")
    @classmethod
    def _readable_ca(cls, value: str) -> str:
        if value:
            try:
                ssl.create_default_context(cafile=value)
            except (OSError, ssl.SSLError) as error:
                raise ValueError(f"cannot use {value!r} as the Kafka CA certificate: {error}") from error
        return value

    @model_validator(mode="after")
    def _usable_http_certificate(self) -> ServiceSettings:
        if self.http_tls_key_file and not self.http_tls_cert_file:
            raise ValueError("MYNUMBER_HTTP_TLS_KEY_FILE is set without MYNUMBER_HTTP_TLS_CERT_FILE")
        if self.http_tls_cert_file:
            try:
                ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                    self.http_tls_cert_file, self.http_tls_key_file or None)
            except (OSError, ssl.SSLError) as error:
                raise ValueError(f"cannot serve HTTPS with the certificate {self.http_tls_cert_file!r} and the key "
                                 f"{self.http_tls_key_file or self.http_tls_cert_file!r}: {error}") from error
        return self

    def kafka_ssl_context(self) -> ssl.SSLContext | None:
        """TLS that trusts only the configured CA and checks the broker's host name, or None without TLS."""
        if not self.kafka_ca_file:
            return None
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.kafka_ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def kafka_security(self) -> Any:
        """FastStream's security object for the broker, or None for PLAINTEXT."""
        from faststream.security import BaseSecurity, SASLScram512

        context = self.kafka_ssl_context()
        if self.kafka_username:
            return SASLScram512(self.kafka_username, self.kafka_password.get_secret_value(),
                                ssl_context=context, use_ssl=context is not None)
        return BaseSecurity(ssl_context=context, use_ssl=True) if context else None

    def kafka_client_kwargs(self) -> dict[str, Any]:
        """Connection arguments for plain aiokafka clients (the admin client)."""
        kwargs: dict[str, Any] = {"bootstrap_servers": self.kafka_bootstrap_servers}
        context = self.kafka_ssl_context()
        if context is not None:
            kwargs.update(security_protocol="SSL", ssl_context=context)
        if self.kafka_username:
            kwargs.update(
                security_protocol="SASL_SSL" if context is not None else "SASL_PLAINTEXT",
                sasl_mechanism="SCRAM-SHA-512",
                sasl_plain_username=self.kafka_username,
                sasl_plain_password=self.kafka_password.get_secret_value(),
            )
        return kwargs

    def api_token_list(self) -> str:
        if self.http_api_tokens_file:
            from pathlib import Path

            return Path(self.http_api_tokens_file).read_text(encoding="utf-8").strip()
        return self.http_api_tokens.get_secret_value()

    def database_name(self, service: str) -> str:
        return self.database or f"{self.topic_namespace}_{service}"

    def partner_registry_database_name(self) -> str:
        return self.partner_registry_database or f"{self.topic_namespace}_partners"

    def group_id(self, service: str) -> str:
        return self.consumer_group or f"{self.topic_namespace}-{service}"
