"""The demo models loaded in-process, and decision engines over them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from service.adverse.decision import AdverseActionEngine
from service.adverse.options import AdverseActionOptions, RecourseOptions
from service.registry.loaded import LoadedModel
from service.registry.store import ModelStore

ROOT = Path(__file__).resolve().parents[2]
DEMO_MODELS = ("german-credit", "german-credit-logit")
PROTECTED = {"personal_status_and_sex", "age_in_years", "foreign_worker"}


@pytest.fixture(scope="session")
def demo_models() -> dict[str, LoadedModel]:
    store = ModelStore(ROOT / "models")
    store.scan()
    return {name: LoadedModel.load(store.get(name)) for name in DEMO_MODELS}


@pytest.fixture(scope="session")
def reasons_only(demo_models: dict[str, LoadedModel]) -> dict[str, AdverseActionEngine]:
    """Engines without the recourse search (fast enough for all 1000 applicants)."""
    options = AdverseActionOptions(recourse=RecourseOptions(enabled=False))
    return {name: AdverseActionEngine(model, options) for name, model in demo_models.items()}


@pytest.fixture(scope="session")
def all_decisions(
    demo_models: dict[str, LoadedModel],
    reasons_only: dict[str, AdverseActionEngine],
    applicants: list[dict[str, Any]],
) -> dict[str, tuple[pd.DataFrame, list[dict[str, Any]]]]:
    """Every applicant of the data set decided by each demo model (no recourse)."""
    out = {}
    for name, model in demo_models.items():
        frame = model.frame(applicants)
        seeds = list(range(len(frame)))
        out[name] = (frame, reasons_only[name].decide(frame, seeds, [None] * len(frame)))
    return out
