"""Decision engines over the demo models (loaded in-process by tests/conftest.py)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from service.adverse.decision import AdverseActionEngine
from service.adverse.options import AdverseActionOptions, RecourseOptions
from service.registry.loaded import LoadedModel

PROTECTED = {"personal_status_and_sex", "age_in_years", "foreign_worker"}


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
