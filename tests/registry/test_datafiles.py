"""Data files are checked before registration: each problem is refused with the file, the
row (from 1, after the header), the column and the reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from service.errors import Issue
from service.registry.datafiles import DataFileError, check_data_file
from service.registry.manifest import Manifest

from .toy import FEATURES, manifest_dict, synthetic_data


def manifest(**changes: object) -> Manifest:
    spec = manifest_dict("toy", "xgboost-json")
    spec.update(changes)
    return Manifest.model_validate(spec)


def frame(rows: int = 6) -> pd.DataFrame:
    return synthetic_data()[[*FEATURES, "outcome"]].iloc[:rows].reset_index(drop=True)


def refused(
    path: Path, data: pd.DataFrame | str, role: str = "evaluation", **changes: object
) -> list[Issue]:
    if isinstance(data, str):
        path.write_text(data)
    else:
        data.to_csv(path, index=False)
    with pytest.raises(DataFileError) as caught:
        check_data_file(path, manifest(**changes), role)
    assert caught.value.status_code == 422
    return caught.value.issues


def test_a_good_file_gives_typed_rows_and_favourable_labels(tmp_path: Path) -> None:
    data = frame()
    data.to_csv(tmp_path / "evaluation.csv", index=False)
    checked = check_data_file(tmp_path / "evaluation.csv", manifest(), "evaluation")
    assert (checked.role, checked.file) == ("evaluation", "evaluation.csv")
    assert list(checked.rows.columns) == FEATURES
    np.testing.assert_array_equal(checked.rows["income"], data["income"].to_numpy(dtype=float))
    assert list(checked.rows["housing"]) == list(data["housing"])
    np.testing.assert_array_equal(checked.labels, (data["outcome"] == "good").astype(int))


def test_labels_outside_the_declared_classes_are_refused(tmp_path: Path) -> None:
    # classes: ['0', '1'] for a file labelled good/bad
    data = frame()
    issues = refused(tmp_path / "evaluation.csv", data, classes=["0", "1"], favourable_class="1")
    seen = ", ".join(repr(v) for v in dict.fromkeys(data["outcome"]))
    assert [(i.loc, i.msg, i.type) for i in issues] == [
        (
            ("body", "evaluation", 1, "outcome"),
            f"evaluation.csv row 1, column 'outcome': label {data['outcome'][0]!r} is not one of "
            f"the declared classes ('0', '1') (6 rows, first at row 1; values {seen})",
            "enum",
        )
    ]


def test_a_target_missing_from_the_evaluation_file_is_refused(tmp_path: Path) -> None:
    # a typo in target: the label column is then also an unknown column
    issues = refused(tmp_path / "evaluation.csv", frame(), target="outcomes")
    messages = {i.loc: i.msg for i in issues}
    assert messages[("body", "evaluation", "outcomes")] == (
        "evaluation.csv has no column 'outcomes', the manifest's target: evaluation rows need "
        "their labels (did you mean 'outcome'?)"
    )
    assert messages[("body", "evaluation", "outcome")] == (
        "evaluation.csv: column 'outcome' is neither a feature nor the target 'outcomes'; "
        "remove it, or declare it in the manifest"
    )


def test_the_reference_file_may_omit_the_target(tmp_path: Path) -> None:
    frame().drop(columns="outcome").to_csv(tmp_path / "reference.csv", index=False)
    checked = check_data_file(tmp_path / "reference.csv", manifest(), "reference")
    assert checked.labels is None and len(checked.rows) == 6


@pytest.mark.parametrize(
    "column, values, words, kind",
    [
        ("income", ["1200"], "'1200' is outside the declared range [0, 1000]", "out_of_range"),
        ("debt_ratio", ["-0.5"], "'-0.5' is outside the declared range [0, 10]", "out_of_range"),
        ("income", ["lots"], "'lots' is not a number", "type_error"),
        (
            "income",
            ["12.5"],
            "'12.5' is not a whole number (the feature is declared integer: true)",
            "int_type",
        ),
        ("income", ["inf"], "'inf' is not a finite number", "finite_number"),
        ("income", [""], "missing value (empty cell)", "missing"),
        (
            "housing",
            ["castle"],
            "'castle' is not a declared category ('rent', 'own', 'free')",
            "enum",
        ),
        ("housing", [""], "missing value (empty cell)", "missing"),
    ],
)
def test_a_bad_value_is_located_by_row_and_column(
    tmp_path: Path, column: str, values: list[str], words: str, kind: str
) -> None:
    data = frame().astype(str)
    data.loc[3, column] = values[0]
    (issue,) = refused(tmp_path / "reference.csv", data, role="reference")
    assert (issue.loc, issue.msg, issue.type) == (
        ("body", "reference", 4, column),
        f"reference.csv row 4, column '{column}': {words}",
        kind,
    )


def test_many_bad_rows_are_one_issue_with_the_count_and_examples(tmp_path: Path) -> None:
    data = frame(20).astype(str)
    data.loc[[2, 5, 9, 11], "income"] = ["2000", "3000", "2000", "4000"]
    (issue,) = refused(tmp_path / "reference.csv", data, role="reference")
    assert issue.loc == ("body", "reference", 3, "income")
    assert issue.msg == (
        "reference.csv row 3, column 'income': '2000' is outside the declared range [0, 1000] "
        "(4 rows, first at row 3; values '2000', '3000', '4000')"
    )


def test_every_column_problem_is_reported_together(tmp_path: Path) -> None:
    data = frame().drop(columns="housing").assign(application_id="A-1")
    issues = refused(tmp_path / "evaluation.csv", data)
    assert [(i.loc[-1], i.type) for i in issues] == [
        ("housing", "missing"),
        ("application_id", "extra_forbidden"),
    ]
    assert issues[0].msg == "evaluation.csv has no column 'housing' (a feature)"


def test_a_duplicated_column_is_refused(tmp_path: Path) -> None:
    text = "income,debt_ratio,housing,income,outcome\n10,0.5,rent,11,good\n"
    issues = refused(tmp_path / "evaluation.csv", text)
    assert [i.msg for i in issues] == ["evaluation.csv: column 'income' appears more than once"]


@pytest.mark.parametrize(
    "text, words",
    [
        ("income,debt_ratio,housing,outcome\n", "evaluation.csv has no rows"),
        (
            'income,debt_ratio,housing,outcome\n10,0.5,rent,good\n"11,0.5,own,good\n',
            "evaluation.csv is not a readable CSV file",
        ),
        ("", "evaluation.csv is not a readable CSV file"),
    ],
    ids=["header-only", "unclosed-quote", "empty"],
)
def test_an_unreadable_or_empty_file_is_refused(tmp_path: Path, text: str, words: str) -> None:
    issues = refused(tmp_path / "evaluation.csv", text)
    assert words in issues[0].msg and issues[0].loc[:2] == ("body", "evaluation")


def test_regression_targets_must_be_numbers(tmp_path: Path) -> None:
    data = synthetic_data()[[*FEATURES, "amount"]].iloc[:5].astype(str)
    data.loc[1, "amount"] = "n/a"
    spec = manifest_dict("toy", "xgboost-json", task="regression")
    path = tmp_path / "evaluation.csv"
    data.to_csv(path, index=False)
    with pytest.raises(DataFileError) as caught:
        check_data_file(path, Manifest.model_validate(spec), "evaluation")
    (issue,) = caught.value.issues
    assert issue.loc == ("body", "evaluation", 2, "amount")
    assert issue.msg == "evaluation.csv row 2, column 'amount': 'n/a' is not a number"
