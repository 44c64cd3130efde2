"""Command line: serve, register a model version, export the OpenAPI document."""

from __future__ import annotations

import ipaddress
import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from service.cli_keys import keys_app, receipts_app
from service.settings import Settings

app = typer.Typer(help="Explanation service for lending models.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(receipts_app, name="receipts")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (XAI_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (XAI_PORT)")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (XAI_WORKERS)")] = None,
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
def worker(
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", help="Worker processes")] = 2,
    queues: Annotated[str, typer.Option(help="Queues, in priority order")] = "interactive,batch",
    loglevel: Annotated[str, typer.Option(help="Celery log level")] = "INFO",
) -> None:
    """Start a Celery worker (needs XAI_REDIS_URL): warm models, one BLAS thread each."""
    import os

    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    from service.jobs.celery_app import make_celery
    from service.receipts.keys import load_signer, signing_key_pem
    from service.worker import init_worker

    settings = Settings()
    if not settings.redis_url:
        raise typer.BadParameter("set XAI_REDIS_URL to the Redis shared with the gateway")
    signing_key = signing_key_pem(settings)  # workers sign the receipts they write
    load_signer(settings, signing_key)  # publishes its public key to the keyring
    # Load models and default explainers once, before the pool forks: children start warm.
    init_worker(
        str(settings.models_dir),
        list(settings.extra_trusted_types),
        signing_key=signing_key,
        remote=settings.remote_policy,
    )
    make_celery(settings).worker_main(
        [
            "worker",
            "-Q",
            queues,
            "-c",
            str(concurrency),
            "-P",
            "prefork",
            f"--loglevel={loglevel}",
            "-n",
            f"xai-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
        ]
    )


@app.command()
def batch(
    model: Annotated[str, typer.Argument(help="Model name, e.g. german-credit")],
    csv_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Applicants (CSV)")],
    out: Annotated[Path, typer.Option(help="Where to write the JSON lines")] = Path(
        "results.jsonl"
    ),
    url: Annotated[
        str, typer.Option(envvar="XAI_URL", help="Service URL")
    ] = "http://127.0.0.1:8000",
    api_key: Annotated[str | None, typer.Option(envvar="XAI_API_KEY", help="Bearer key")] = None,
    method: Annotated[list[str], typer.Option(help="Methods (repeatable)")] = ["shap"],  # noqa: B006
    seed: Annotated[int | None, typer.Option(help="Seed of stochastic methods")] = None,
) -> None:
    """Explain every row of a CSV as one batch job, with a progress bar; write JSON lines."""
    from service.batch_client import BatchError, read_instances, run_batch

    with service_client(url, api_key) as client:
        features = model_features(client, model)
        try:
            instances = read_instances(csv_file, features)
            options = {"seed": seed} if seed is not None else {}
            with progress_bar() as bar:
                task = bar.add_task(f"{len(instances)} rows", total=1.0)
                summary = run_batch(
                    client,
                    model,
                    instances,
                    out,
                    {"methods": method, "options": options},
                    lambda done, state: bar.update(task, completed=done, description=state),
                )
        except BatchError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
    typer.echo(f"job {summary['job_id']}: {summary['rows']} rows written to {out}")


@app.command()
def notices(
    model: Annotated[str, typer.Argument(help="Model name, e.g. german-credit")],
    csv_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Applicants (CSV)")],
    out: Annotated[Path, typer.Option(help="Folder for results and notices")] = Path("notices"),
    url: Annotated[
        str, typer.Option(envvar="XAI_URL", help="Service URL")
    ] = "http://127.0.0.1:8000",
    api_key: Annotated[str | None, typer.Option(envvar="XAI_API_KEY", help="Bearer key")] = None,
    max_reasons: Annotated[int, typer.Option(min=1, max=10, help="Reasons per denial")] = 4,
    recourse: Annotated[bool, typer.Option(help="Search recourse for denials")] = True,
    seed: Annotated[int | None, typer.Option(help="Seed of the stochastic parts")] = None,
) -> None:
    """Adverse-action decisions for every applicant of a CSV (optional application_id
    column) as one batch job, with a progress bar; writes results.jsonl, results.csv and
    notices/<application>.txt for each denial."""
    from service.batch_client import BatchError, run_notices

    options: dict[str, object] = {"max_reasons": max_reasons, "recourse": {"enabled": recourse}}
    if seed is not None:
        options["seed"] = seed
    with service_client(url, api_key) as client:
        try:
            with progress_bar() as bar:
                task = bar.add_task(f"{csv_file.name}", total=1.0)
                summary = run_notices(
                    client,
                    model,
                    csv_file,
                    out,
                    options,
                    lambda done, state: bar.update(task, completed=done, description=state),
                )
        except BatchError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
    typer.echo(
        f"job {summary['job_id']}: {summary['rows']} decisions, {summary['denied']} notices "
        f"written to {out}"
    )


def service_client(url: str, api_key: str | None) -> Any:
    """An HTTP client for the service, with the bearer key when one is given."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return httpx.Client(base_url=url, headers=headers, timeout=120)


def model_features(client: Any, model: str) -> list[dict[str, Any]]:
    """The model's feature schema from the service; exits with the service's answer if not."""
    response = client.get(f"/v1/models/{model}")
    if response.status_code != 200:
        typer.echo(f"error: HTTP {response.status_code}: {response.text}", err=True)
        raise typer.Exit(1)
    return list(response.json()["features"])


def progress_bar() -> Any:
    """A rich progress bar for a job's 0-1 progress."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TimeElapsedColumn(),
    )


@app.command("global")
def global_(
    model: Annotated[str, typer.Argument(help="Model name, e.g. german-credit")],
    out: Annotated[Path, typer.Option(help="Folder for the plots and result.json")] = Path(
        "global"
    ),
    method: Annotated[list[str], typer.Option(help="Methods (repeatable)")] = [  # noqa: B006
        "permutation_importance",
        "shap_importance",
        "pdp",
        "ale",
    ],
    feature: Annotated[
        list[str] | None, typer.Option(help="Features of PDP/ICE/ALE (repeatable); default all")
    ] = None,
    image_format: Annotated[str, typer.Option("--format", help="svg or png")] = "svg",
    url: Annotated[
        str, typer.Option(envvar="XAI_URL", help="Service URL")
    ] = "http://127.0.0.1:8000",
    api_key: Annotated[str | None, typer.Option(envvar="XAI_API_KEY", help="Bearer key")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of sampling and shuffles")] = None,
) -> None:
    """Run a global explanation as a job, with a progress bar; write its plots to a folder."""
    from service.batch_client import BatchError
    from service.global_client import global_body, run_global_job, save_plots

    with service_client(url, api_key) as client:
        features = model_features(client, model)
        numeric = {f["name"] for f in features if f["type"] == "numeric"}
        try:
            body = global_body(method, feature, numeric, seed)
            with progress_bar() as bar:
                task = bar.add_task(f"global explanation of {model}", total=1.0)
                document = run_global_job(
                    client,
                    model,
                    body,
                    lambda done, state: bar.update(
                        task, completed=done, description=f"{model}: {state}"
                    ),
                )
                bar.update(task, description=f"{model}: plotting")
                written = save_plots(client, document, out, image_format)
        except BatchError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
    typer.echo(f"job {document['job_id']}: {len(written)} plots written to {out}")


@app.command()
def register(
    manifest: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="manifest.yaml")],
    files: Annotated[
        list[Path],
        typer.Argument(
            exists=True,
            dir_okay=False,
            help="artifact, reference and evaluation files (a remote model: no artifact)",
        ),
    ],
    models_dir: Annotated[Path | None, typer.Option(help="Model repository")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the JSON document POST /v1/models answers")
    ] = False,
) -> None:
    """Register a model version (validated; joblib allowed if the manifest trusts it; a
    remote model's endpoint is scored and fingerprinted, and it takes no artifact file) and
    print the registration report. A running service serves it within seconds."""
    import tempfile

    from service.errors import ServiceError
    from service.registration import registration_report
    from service.registry.artifacts import UnsafeArtifactError
    from service.registry.manifest import parse_manifest
    from service.registry.remote.registration import fingerprint_file
    from service.registry.store import MANIFEST_FILE, ModelStore
    from service.registry.validation import CandidateError
    from service.report_text import render_refusal, render_report

    settings = Settings(**({"models_dir": models_dir} if models_dir else {}))
    manifest_bytes = manifest.read_bytes()
    payload = {path.name: path.read_bytes() for path in files}
    with tempfile.TemporaryDirectory() as staging:
        folder = Path(staging)
        (folder / MANIFEST_FILE).write_bytes(manifest_bytes)
        for name, data in payload.items():
            (folder / name).write_bytes(data)
        try:
            report = registration_report(folder, "cli", settings.extra_trusted_types)
            payload |= fingerprint_file(folder, parse_manifest(manifest_bytes))
            version, created = ModelStore(settings.models_dir).register(
                manifest_bytes, payload, "cli"
            )
        except (ServiceError, UnsafeArtifactError, CandidateError) as exc:
            typer.echo(render_refusal(exc), err=True)
            raise typer.Exit(2) from exc
    document = {
        "name": version.name,
        "version": version.version_id,
        "content_hash": version.content_hash,
        "created": created,
        "report": report.model_dump(mode="json"),
    }
    typer.echo(json.dumps(document, indent=2) if as_json else render_report(document))


manifest_app = typer.Typer(help="Write and check model manifests.", no_args_is_help=True)
app.add_typer(manifest_app, name="manifest")


@manifest_app.command("draft")
def manifest_draft(
    data: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="Training data (CSV)")],
    target: Annotated[str, typer.Option(help="The label column of the data")],
    model: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="The artifact: its feature order"),
    ] = None,
    artifact_format: Annotated[
        str | None, typer.Option("--format", help="Artifact format (default: by extension)")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Model name (default: from the data)")] = None,
    favourable: Annotated[
        str | None, typer.Option(help="The favourable class (default: a TODO)")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Where to write (default: stdout)")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite --out if it exists")] = False,
) -> None:
    """Write a starting manifest inferred from the data (and the artifact), for review:
    TODO placeholders for reason statements, likely protected attributes flagged."""
    from service.registry.draft import draft_manifest
    from service.registry.draft_infer import DraftError
    from service.registry.manifest import ArtifactFormat

    if out is not None and out.exists() and not force:
        raise typer.BadParameter(f"{out} exists; use --force to overwrite", param_hint="--out")
    try:
        fmt = ArtifactFormat(artifact_format) if artifact_format else None
        text = draft_manifest(data, target, model, fmt, name, favourable)
    except (DraftError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)
        todo = text.count("TODO:")
        typer.echo(f"wrote {out}: review it and replace its {todo} TODO placeholders")


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
