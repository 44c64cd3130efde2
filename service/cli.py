"""Command line: serve, register a model version, export the OpenAPI document."""

from __future__ import annotations

import ipaddress
import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from service.settings import Settings

app = typer.Typer(help="Explanation service for lending models.", no_args_is_help=True)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (XAI_HOST)")] = None,  # noqa: UP007
    port: Annotated[int | None, typer.Option(help="Port (XAI_PORT)")] = None,  # noqa: UP007
    workers: Annotated[int | None, typer.Option(help="Worker processes (XAI_WORKERS)")] = None,  # noqa: UP007
) -> None:
    """Start the gateway with its embedded worker pool."""
    import uvicorn

    from service.gateway.app import create_app

    overrides = {
        k: v for k, v in {"host": host, "port": port, "workers": workers}.items() if v is not None
    }
    settings = Settings(**overrides)
    if not settings.auth_enabled and not _is_loopback(settings.host):
        raise typer.BadParameter(
            f"refusing to listen on {settings.host} without API keys: set XAI_API_KEYS "
            "or use a loopback address",
            param_hint="--host",
        )
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")


@app.command()
def register(
    manifest: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="manifest.yaml")],
    files: Annotated[
        list[Path],
        typer.Argument(
            exists=True, dir_okay=False, help="artifact, reference and evaluation files"
        ),
    ],
    models_dir: Annotated[Path | None, typer.Option(help="Model repository")] = None,  # noqa: UP007
) -> None:
    """Register a local model version (validated; joblib allowed if the manifest trusts it)."""
    import tempfile

    from service.errors import ServiceError
    from service.registry.artifacts import UnsafeArtifactError
    from service.registry.store import MANIFEST_FILE, ModelStore
    from service.registry.validation import CandidateError, validate_candidate

    settings = Settings(**({"models_dir": models_dir} if models_dir else {}))
    manifest_bytes = manifest.read_bytes()
    payload = {path.name: path.read_bytes() for path in files}
    with tempfile.TemporaryDirectory() as staging:
        folder = Path(staging)
        (folder / MANIFEST_FILE).write_bytes(manifest_bytes)
        for name, data in payload.items():
            (folder / name).write_bytes(data)
        try:
            summary = validate_candidate(folder, "cli", settings.extra_trusted_types)
            version, created = ModelStore(settings.models_dir).register(
                manifest_bytes, payload, "cli"
            )
        except (ServiceError, UnsafeArtifactError, CandidateError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
    state = "registered" if created else "already registered"
    typer.echo(f"{version.name} {version.version_id} {state} {json.dumps(summary)}")


@app.command()
def openapi(
    out: Annotated[Path, typer.Option(help="Where to write")] = Path("api_schema/openapi.json"),
) -> None:
    """Write the app's OpenAPI document (the contract)."""
    from service.gateway.app import create_app
    from service.gateway.openapi import render_openapi

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_openapi(create_app(Settings())))
    typer.echo(f"wrote {out}")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


if __name__ == "__main__":
    app()
