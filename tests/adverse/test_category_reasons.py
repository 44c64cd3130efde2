"""A categorical feature's statement depends on the applicant's value: "Student status"
is given to students only, on a lender's model where being a student (and being
self-employed or unemployed) pushes toward denial."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from service.adverse.decision import AdverseActionEngine, notice_text
from service.adverse.options import AdverseActionOptions, RecourseOptions
from service.registry.loaded import LoadedModel
from tests.adverse.lenders import (
    employment_data,
    employment_manifest,
    employment_pipeline,
    register,
)

PER_CATEGORY = {
    "reason_by_category": [
        {"categories": ["student"], "code": "ST01", "statement": "Student status"},
        {"categories": ["unemployed"], "code": "EM20", "statement": "No current employment"},
    ],
    "reason": {"code": "EM10", "statement": "Type of employment"},
}
ONE_STATEMENT = {"reason": {"code": "ST01", "statement": "Student status"}}
NO_RECOURSE = AdverseActionOptions(recourse=RecourseOptions(enabled=False))


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return employment_data()


def lender(root: Path, data: pd.DataFrame, employment: dict[str, Any]) -> LoadedModel:
    return register(root, employment_manifest(**employment), employment_pipeline(data), data[:400])


def decide(model: LoadedModel, applicants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    frame = model.frame(applicants)
    documents = AdverseActionEngine(model, NO_RECOURSE).decide(
        frame, list(range(len(frame))), [None] * len(frame)
    )
    for document in documents:
        document["receipt_id"] = "rcpt_test"
        document["notice"] = notice_text(model, document)
    return documents


def employment_reason(document: dict[str, Any]) -> tuple[str, str] | None:
    for reason in document["reasons"]:
        if any(f["feature"] == "employment" for f in reason["features"]):
            return reason["code"], reason["statement"]
    return None


def test_a_student_and_a_self_employed_applicant_get_their_own_statement(
    tmp_path: Path, data: pd.DataFrame
) -> None:
    model = lender(tmp_path, data, PER_CATEGORY)
    student, self_employed = decide(
        model,
        [
            {"employment": "student", "income": 30.0, "debt": 1.5},
            {"employment": "self-employed", "income": 30.0, "debt": 1.5},
        ],
    )
    assert student["decision"] == self_employed["decision"] == "denied"
    assert employment_reason(student) == ("ST01", "Student status")
    assert "- ST01 Student status" in student["notice"]
    assert employment_reason(self_employed) == ("EM10", "Type of employment")
    assert "- EM10 Type of employment" in self_employed["notice"]
    assert "Student status" not in self_employed["notice"]
    # the same applicants under a catalogue with one statement for the feature: the bug
    single = lender(tmp_path / "single", data, ONE_STATEMENT)
    _, told = decide(single, [{"employment": "self-employed", "income": 30.0, "debt": 1.5}] * 2)
    assert employment_reason(told) == ("ST01", "Student status")


def test_no_denied_non_student_is_ever_told_student_status(
    tmp_path: Path, data: pd.DataFrame
) -> None:
    model = lender(tmp_path, data, PER_CATEGORY)
    applicants = data.iloc[400:].drop(columns="outcome").to_dict("records")
    documents = decide(model, applicants)
    expected = {
        "student": ("ST01", "Student status"),
        "unemployed": ("EM20", "No current employment"),
    }
    given: dict[str, int] = {}
    for applicant, document in zip(applicants, documents, strict=True):
        if document["decision"] == "approved":
            assert document["notice"] is None
            continue
        reason = employment_reason(document)
        if reason is not None:
            assert reason == expected.get(applicant["employment"], ("EM10", "Type of employment"))
            given[reason[0]] = given.get(reason[0], 0) + 1
        if applicant["employment"] != "student":
            assert "Student status" not in document["notice"]
    # every statement was actually given to someone (the check above is not vacuous)
    assert set(given) == {"ST01", "EM20", "EM10"}, given
    assert given["ST01"] > 20
