"""The manifest's ``artifact`` block of a remote model: where the model server is and how
to call it. Secrets never appear here: ``auth_env`` names an environment variable."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

FINGERPRINT_FILE = "fingerprint.json"
NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


class Protocol(StrEnum):
    open_inference_v2 = "open-inference-v2"  # POST {url}/v2/models/{model}[/versions/{v}]/infer
    kserve_v1 = "kserve-v1"  # POST {url}/v1/models/{model}:predict


class RemoteOutput(StrEnum):
    """What the endpoint answers for a classifier: class probabilities (one column per
    class in ``classes`` order, or one column for ``classes[1]``) or a margin (log-odds of
    ``classes[1]``). A regression endpoint answers its predicted value either way."""

    probability = "probability"
    margin = "margin"


class RemoteArtifact(BaseModel):
    """A model served elsewhere, called by the workers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["remote"]
    protocol: Protocol = Protocol.open_inference_v2
    url: Annotated[str, Field(min_length=1, max_length=2048)] = Field(
        ..., description="Base URL of the model server, e.g. http://127.0.0.1:8080."
    )
    model: Annotated[str, Field(pattern=NAME)] = Field(..., description="Model name there.")
    version: Annotated[str, Field(pattern=NAME)] | None = Field(
        None, description="Model version there (V2: /versions/{version}; KServe v1: none)."
    )
    output: RemoteOutput = RemoteOutput.probability
    output_name: Annotated[str, Field(pattern=NAME)] | None = Field(
        None,
        description="V2: the output tensor to ask for and read (MLServer's scikit-learn "
        "runtime: predict_proba); default: the endpoint's only output.",
    )
    timeout_s: float = Field(10.0, gt=0, le=600, description="Per HTTP request.")
    max_rows_per_call: int = Field(
        5000,
        ge=1,
        le=1_000_000,
        description="Rows per request (a larger sampling round is split); each request has a "
        "fixed cost at the model server, so larger is faster while the server accepts it.",
    )
    max_concurrency: int = Field(4, ge=1, le=64, description="Requests in flight per worker.")
    auth_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")] | None = Field(
        None,
        description="Name of an environment variable (of the workers) holding the "
        "Authorization header value, e.g. 'Bearer ...'. The value is never stored or logged.",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.username is not None or parts.password is not None:
            raise ValueError("must not hold credentials; name an environment variable in auth_env")
        if parts.query or parts.fragment:
            raise ValueError("must be the server's base URL, without a query or fragment")
        try:
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError as exc:
            raise ValueError(f"has an invalid port: {exc}") from exc
        return url.rstrip("/")

    @property
    def path(self) -> str:
        """The version's file standing for the artifact: the fingerprint of the endpoint's
        answers, written at registration (so the version id depends on it)."""
        return FINGERPRINT_FILE

    @property
    def trusted(self) -> bool:
        return False

    @property
    def endpoint(self) -> str:
        """How errors and status name the endpoint (no credentials: the URL holds none)."""
        version = f" version {self.version}" if self.version else ""
        return f"{self.url} ({self.protocol.value}, model {self.model}{version})"
