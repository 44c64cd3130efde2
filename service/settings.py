"""Service settings, read from the environment with the ``XAI_`` prefix."""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

TENANT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class Scope(StrEnum):
    """What an API key may do. ``admin`` implies ``explain``."""

    explain = "explain"
    admin = "admin"


class ApiKey(BaseModel):
    """What one API key grants, and the tenant whose jobs and receipts it sees."""

    scopes: list[Scope] = Field(..., min_length=1)
    tenant: str | None = Field(
        None,
        pattern=TENANT_PATTERN,
        description="Keys with the same tenant share jobs and receipts; a key without one "
        "is a tenant of its own.",
    )


class Settings(BaseSettings):
    """All tunables of the gateway and its executor."""

    # Errors never echo values: API keys and secrets are settings.
    model_config = SettingsConfigDict(env_prefix="XAI_", extra="ignore", hide_input_in_errors=True)

    models_dir: Path = Field(Path("models"), description="Model repository folder.")
    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: dict[str, ApiKey] = Field(
        default_factory=dict,
        description='JSON object: API key -> scopes, e.g. {"k1": ["explain"], "k2": ["admin"]}, '
        'or -> {"scopes": [...], "tenant": "bank-a"}.',
    )
    redis_url: str | None = None
    workers: int = Field(2, ge=1, le=64, description="Embedded worker processes.")
    job_time_limit: float = Field(120.0, gt=0, description="Hard limit per job chunk, seconds.")
    default_wait: float = Field(10.0, ge=0, description="Seconds a request waits before 202.")
    max_wait: float = Field(60.0, ge=0)
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    max_instances: int = Field(10_000, ge=1)
    chunk_size: int = Field(250, ge=1, description="Instances per worker task of a job.")
    cache_max_entries: int = Field(4096, ge=1, description="Embedded: result cache entries.")
    cache_max_bytes: int = Field(
        64 * 1024 * 1024, ge=0, description="Embedded: bytes of results in the result cache."
    )
    job_ttl_seconds: float = Field(
        3600.0, gt=0, description="Seconds finished job records and their results are kept."
    )
    job_max_finished: int = Field(
        5_000,
        ge=1,
        description="Embedded: finished job records kept (oldest dropped first; an active "
        "job is never dropped).",
    )
    job_max_result_bytes: int = Field(
        256 * 1024 * 1024,
        ge=0,
        description="Embedded: bytes of results held by finished job records (oldest "
        "dropped first; the newest is kept even when larger).",
    )
    redelivery_seconds: float | None = Field(
        None,
        gt=0,
        description="Distributed: a task whose worker died is redelivered after this "
        "(default 2 x job_time_limit + 30; must exceed job_time_limit).",
    )
    reconcile_seconds: float = Field(
        5.0,
        gt=0,
        le=300,
        description="Distributed: how often a gateway compares active jobs with the broker "
        "and sends again chunks it lost (a lost chunk is sent again within two periods).",
    )
    max_upload_bytes: int = Field(200 * 1024 * 1024, ge=1024)
    models_rescan_seconds: float = Field(
        2.0,
        ge=0,
        description="How often the gateway looks for versions registered by other processes "
        "(e.g. the CLI); 0: only when a request names an unknown model or version.",
    )
    extra_trusted_types: list[str] = Field(
        default_factory=list,
        description="Operator-approved extra types for skops loading (never from a manifest).",
    )
    receipts_path: Path = Field(
        Path("var/receipts.sqlite3"),
        description="Embedded mode: SQLite file of adverse-action receipts (Redis when "
        "redis_url is set).",
    )
    receipt_retention_days: float | None = Field(
        None, gt=0, description="Receipts older than this are deleted; default: kept forever."
    )
    keys_dir: Path = Field(
        Path("var/keys"),
        description="Server secret and receipt signing keys, generated on first start "
        "(mode 0600); share it between gateways and workers of one deployment.",
    )
    server_secret: SecretStr | None = Field(
        None,
        min_length=32,
        description="Gateways: key of the HMAC that derives job and receipt ids (default: "
        "the file server-secret in keys_dir).",
    )
    receipt_signing_key: SecretStr | None = Field(
        None,
        description="Ed25519 private key (PKCS#8 PEM) that signs receipts (default: the file "
        "receipt-signing-key.pem in keys_dir).",
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _grants(cls, value: Any) -> Any:
        """``{"key": ["explain"]}`` (scopes only) is a grant without a tenant. A bad grant
        is named by its position, never by the key."""
        if not isinstance(value, dict):
            return value
        grants: dict[str, ApiKey] = {}
        for position, (key, grant) in enumerate(value.items(), start=1):
            try:
                grants[key] = ApiKey.model_validate(
                    {"scopes": grant} if isinstance(grant, list) else grant
                )
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(map(str, e['loc'])) or 'grant'}: {e['msg']}" for e in exc.errors()
                )
                raise ValueError(f"API key #{position}: {problems}") from None
        return grants

    remote_retry_seconds: float = Field(
        20.0,
        gt=0,
        description="Remote models: how long a failed call to the endpoint is retried with "
        "backoff (never past the job's time limit) before the job fails.",
    )
    remote_recheck_seconds: float = Field(
        0.0,
        ge=0,
        description="Remote models: how often a worker re-checks the endpoint against the "
        "version's fingerprint; 0: in every task (the check rows ride along with its first "
        "call).",
    )

    @property
    def receipts_location(self) -> str:
        """Where workers write receipts and the gateway reads them."""
        if self.redis_url is not None:
            return self.redis_url
        return f"sqlite://{self.receipts_path.resolve()}"

    @property
    def receipt_retention_seconds(self) -> float | None:
        days = self.receipt_retention_days
        return None if days is None else days * 86_400

    @property
    def remote_policy(self) -> dict[str, float]:
        """What workers need to call remote models (service/registry/remote/policy.py)."""
        return {
            "retry_seconds": self.remote_retry_seconds,
            "recheck_seconds": self.remote_recheck_seconds,
            "time_limit": self.job_time_limit,
        }

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)

    @property
    def visibility_timeout(self) -> int:
        """Seconds before an unacknowledged task is redelivered to another worker."""
        default = self.job_time_limit * 2 + 30
        return int(max(self.redelivery_seconds or default, self.job_time_limit + 1))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings of this process, read once."""
    return Settings()
