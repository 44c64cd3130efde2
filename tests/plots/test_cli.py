"""`xai-service global`: runs the job over HTTP and writes its plots to a folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, ServerProcess

CLI = Path(sys.executable).parent / "xai-service"


def test_cli_writes_the_plots_of_a_global_explanation(
    server: ServerProcess, tmp_path: Path
) -> None:
    out = tmp_path / "plots"
    result = subprocess.run(
        [
            str(CLI),
            "global",
            "german-credit-logit",
            "--out",
            str(out),
            "--url",
            server.url,
            "--method",
            "shap_importance",
            "--method",
            "ice",
            "--method",
            "ale",
            "--feature",
            "duration_in_month",
            "--feature",
            "housing",
            "--seed",
            "4",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 plots written" in result.stdout
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "ale-duration_in_month.svg",
        "beeswarm.svg",
        "importance-shap_importance.svg",
        "pdp-duration_in_month.svg",
        "pdp-housing.svg",
        "result.json",
    ]
    assert all((out / n).stat().st_size > 8_000 for n in names if n.endswith(".svg"))
    document = json.loads((out / "result.json").read_text())
    assert document["seed"] == 4 and set(document["results"]) == {"shap_importance", "ice", "ale"}


def test_cli_reports_a_refused_request(server: ServerProcess, tmp_path: Path) -> None:
    result = subprocess.run(
        [str(CLI), "global", "german-credit", "--out", str(tmp_path), "--url", server.url,
         "--method", "pdp", "--feature", "nope"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert "422" in result.stderr and "unknown feature 'nope'" in result.stderr
