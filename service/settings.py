"""Service settings, read from the environment with the ``XAI_`` prefix."""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Scope(StrEnum):
    """What an API key may do. ``admin`` implies ``explain``."""

    explain = "explain"
    admin = "admin"


class Settings(BaseSettings):
    """All tunables of the gateway and its executor."""

    model_config = SettingsConfigDict(env_prefix="XAI_", extra="ignore")

    models_dir: Path = Field(Path("models"), description="Model repository folder.")
    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: dict[str, list[Scope]] = Field(
        default_factory=dict,
        description='JSON object: API key -> scopes, e.g. {"k1": ["explain"], "k2": ["admin"]}.',
    )
    redis_url: str | None = None
    workers: int = Field(2, ge=1, le=64, description="Embedded worker processes.")
    job_time_limit: float = Field(120.0, gt=0, description="Hard limit per job chunk, seconds.")
    default_wait: float = Field(10.0, ge=0, description="Seconds a request waits before 202.")
    max_wait: float = Field(60.0, ge=0)
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    max_instances: int = Field(10_000, ge=1)
    chunk_size: int = Field(250, ge=1, description="Instances per worker task of a job.")
    cache_max_entries: int = Field(4096, ge=1)
    job_ttl_seconds: float = Field(3600.0, gt=0)
    redelivery_seconds: float | None = Field(
        None,
        gt=0,
        description="Distributed: a task whose worker died is redelivered after this "
        "(default 2 x job_time_limit + 30; must exceed job_time_limit).",
    )
    max_upload_bytes: int = Field(200 * 1024 * 1024, ge=1024)
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
