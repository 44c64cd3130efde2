"""Command line for keys and receipts: create and rotate keys, verify a receipt offline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from service.settings import Settings

keys_app = typer.Typer(
    help="The server secret and the receipt signing keys (in XAI_KEYS_DIR).",
    no_args_is_help=True,
)
receipts_app = typer.Typer(help="Adverse-action receipts.", no_args_is_help=True)


@keys_app.command("init")
def init_keys() -> None:
    """Create the server secret and the receipt signing key unless they exist. Run once per
    deployment, then give every gateway and worker the same folder (its contents are
    secret: mode 0600)."""
    from service.gateway.handles import server_secret
    from service.receipts.keys import load_signer

    settings = Settings()
    server_secret(settings)
    signer = load_signer(settings)
    typer.echo(f"server secret and receipt signing key {signer.key_id} in {settings.keys_dir}")


@keys_app.command("rotate")
def rotate_key() -> None:
    """Replace the receipt signing key. Restart gateways and workers to sign with the new
    key; receipts signed with the old one keep verifying (its public key stays published)."""
    from service.receipts.keys import rotate

    try:
        old, new = rotate(Settings())
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"receipts are now signed with {new} (after a restart); {old} still verifies")


@receipts_app.command("verify")
def verify_offline(
    receipt: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="GET /v1/receipts/{id} output")
    ],
    keys: Annotated[
        Path,
        typer.Option(exists=True, dir_okay=False, help="GET /v1/receipts/keys output"),
    ],
) -> None:
    """Check an exported receipt's signature against the published public keys, without the
    service. Exit status 0 when it is valid, 1 when not. (Re-deriving the id needs the
    server secret and a replay needs the model: POST /v1/receipts/{id}/verify does both.)"""
    from service.receipts.signing import PublicKeys

    try:
        record = _json(receipt)
        known = PublicKeys.from_document(_json(keys))
    except (ValueError, KeyError, TypeError) as exc:
        typer.echo(f"error: cannot read the receipt or the keys: {exc}", err=True)
        raise typer.Exit(2) from exc
    if not isinstance(record, dict):
        typer.echo("error: the receipt is not a JSON object", err=True)
        raise typer.Exit(2)
    check = known.check(record)
    report = {
        "receipt_id": record.get("receipt_id"),
        "signature_valid": check.valid,
        "key_id": check.key_id,
        "problem": check.reason,
    }
    typer.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    raise typer.Exit(0 if check.valid else 1)


def _json(path: Path) -> Any:
    return orjson.loads(path.read_bytes())
