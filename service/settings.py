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
