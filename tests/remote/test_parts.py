"""The remote model's parts on their own: manifest block, wire format, output reading,
fingerprint, distinct rows and the endpoint's shared status."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

from service.errors import InvalidRequestError
from service.explainers.shap.permutation import PermutationShap
from service.registry.distinct import distinct_coded_rows, distinct_rows
from service.registry.loaded import LoadedModel
from service.registry.manifest import Manifest, parse_manifest
from service.registry.predictors import Predictor
from service.registry.remote import status
from service.registry.remote.codec import Codec, MalformedResponse
from service.registry.remote.fingerprint import Fingerprint
from service.registry.remote.outputs import OutputReader
from tests.remote.conftest import Opaque, demo_manifest, remote_manifest

NAME = "german-credit"


def manifest(**artifact: object) -> Manifest:
    url = str(artifact.pop("url", "http://127.0.0.1:9"))
    return parse_manifest(remote_manifest(demo_manifest(NAME), "x", url, **artifact))


@pytest.mark.parametrize(
    ("artifact", "loc", "text"),
    [
        ({"url": "ftp://host"}, ["manifest", "artifact", "url"], "http:// or https://"),
        ({"url": "http://me:pw@host"}, ["manifest", "artifact", "url"], "auth_env"),
        ({"url": "http://host/?x=1"}, ["manifest", "artifact", "url"], "query"),
        ({"protocol": "grpc"}, ["manifest", "artifact", "protocol"], "open-inference-v2"),
        ({"auth_env": "not a name"}, ["manifest", "artifact", "auth_env"], "pattern"),
        ({"max_concurrency": 0}, ["manifest", "artifact", "max_concurrency"], "greater"),
        ({"path": "model.skops"}, ["manifest", "artifact", "path"], "Extra inputs"),
    ],
)
def test_the_remote_block_is_validated(
    artifact: dict[str, object], loc: list[str], text: str
) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        manifest(**artifact)
    issue = refused.value.issues[0]
    assert list(issue.loc) == loc and text in issue.msg


def test_a_remote_version_consists_of_its_manifest_data_and_fingerprint() -> None:
    m = manifest()
    assert m.is_remote and m.artifact.path == "fingerprint.json"
    assert m.data_files() == ["fingerprint.json", "reference.csv", "evaluation.csv"]
    assert m.artifact.url == "http://127.0.0.1:9" and m.artifact.endpoint.startswith(m.artifact.url)


def test_v2_paths_and_answers() -> None:
    codec = Codec(manifest(version="3"), manifest(version="3").artifact)  # type: ignore[arg-type]
    assert codec.path == "http://127.0.0.1:9/v2/models/german-credit/versions/3/infer"
    answer = {
        "outputs": [
            {
                "name": "predict_proba",
                "shape": [2, 2],
                "datatype": "FP32",
                "data": [0.25, 0.75, 0.5, 0.5],
            }
        ]
    }
    np.testing.assert_array_equal(codec.decode(orjson.dumps(answer), 2), [[0.25, 0.75], [0.5, 0.5]])
    for broken, reason in [
        ({"outputs": []}, "no 'outputs'"),
        ({"outputs": [{"name": "y", "shape": [2], "datatype": "FP64", "data": [1]}]}, "no output"),
        ({"outputs": [answer["outputs"][0] | {"shape": [3, 2]}]}, "4 values for shape [3, 2]"),
        ({"outputs": [answer["outputs"][0] | {"data": ["a", "b", "c", "d"]}]}, "not numbers"),
    ]:
        with pytest.raises(MalformedResponse, match=reason.replace("[", r"\[").replace("]", r"\]")):
            codec.decode(orjson.dumps(broken), 2)


def test_outputs_are_read_for_the_favourable_class() -> None:
    both = np.array([[0.2, 0.8], [0.9, 0.1]])
    reader = OutputReader(manifest(), manifest().artifact)  # type: ignore[arg-type]
    np.testing.assert_array_equal(reader.probability(both), [0.8, 0.1])
    np.testing.assert_allclose(reader.margin(both), np.log([4.0, 1 / 9]))
    np.testing.assert_array_equal(reader.probability(both[:, [1]]), [0.8, 0.1])  # of classes[1]
    flipped = demo_manifest(NAME) | {"favourable_class": "bad"}
    other = parse_manifest(remote_manifest(flipped, "x", "http://h", output="margin"))
    margins = OutputReader(other, other.artifact)  # type: ignore[arg-type]
    np.testing.assert_allclose(margins.margin(np.array([[2.0], [-1.0]])), [-2.0, 1.0])
    with pytest.raises(MalformedResponse, match="declare artifact.output: margin"):
        reader.check(np.array([[1.5], [0.2]]))
    with pytest.raises(MalformedResponse, match="1 or 2 columns"):
        reader.check(np.ones((2, 3)) / 3)


def test_the_fingerprint_rounds_hashes_and_compares() -> None:
    rng = np.random.default_rng(0)
    answers = rng.random((200, 2))
    fingerprint = Fingerprint.of(answers)
    assert len(fingerprint.check_rows) == 8 and fingerprint.check_rows[-1] == 199
    again = Fingerprint.from_json(fingerprint.to_json())
    assert again.digest == fingerprint.digest
    assert Fingerprint.of(answers + 1e-9).digest in (
        fingerprint.digest,
        Fingerprint.of(answers + 1e-9).digest,
    )
    checked = answers[list(fingerprint.check_rows)]
    assert fingerprint.difference(checked + 4e-7) is None  # within the rounding
    assert "check rows answer differently" in fingerprint.difference(checked + 1e-3)  # type: ignore[operator]
    assert "output column" in fingerprint.difference(checked[:, :1])  # type: ignore[operator]
    tampered = orjson.loads(fingerprint.to_json())
    tampered["outputs"][0][0] += 0.5
    with pytest.raises(ValueError, match="does not match its digest"):
        Fingerprint.from_json(orjson.dumps(tampered))


def test_distinct_rows_are_exact() -> None:
    rng = np.random.default_rng(3)
    for _ in range(25):
        n = int(rng.integers(32, 2000))
        columns = int(rng.integers(1, 30))
        frame = pd.DataFrame(
            {
                f"c{j}": rng.integers(0, rng.integers(1, 40), n).astype(float)
                if j % 2
                else pd.Series(rng.choice(list("abcdef"), n)).astype(str)
                for j in range(columns)
            }
        )
        distinct, inverse = distinct_rows(frame)
        assert not distinct.duplicated().any()
        if inverse is not None:
            pd.testing.assert_frame_equal(distinct.iloc[inverse].reset_index(drop=True), frame)
    frame = pd.DataFrame({"a": [1.0, 2.0] * 20, "b": ["x", "y"] * 20})
    distinct, inverse = distinct_rows(frame)
    assert len(distinct) == 2 and inverse is not None and list(inverse[:4]) == [0, 1, 0, 1]


def test_the_endpoint_state_is_shared_through_the_repository(tmp_path: Path) -> None:
    version = tmp_path / "models" / "x" / "0123456789abcdef"
    version.mkdir(parents=True)
    assert status.read(version)["state"] == "unknown"
    status.record(version, status.EndpointState.changed, "answers differ")
    assert status.read(version)["state"] == "changed"
    assert status.status_file(version).parent.parent.name == ".remote-status"


def test_coded_rows_are_exact() -> None:
    rng = np.random.default_rng(5)
    for _ in range(25):
        n = int(rng.integers(32, 3000))
        frame = pd.DataFrame(
            {
                f"c{j}": rng.integers(0, rng.integers(1, 6), n).astype(float)
                if j % 2
                else pd.Series(rng.choice(list("abc"), n)).astype(str)
                for j in range(int(rng.integers(1, 40)))
            }
        )
        factorized = [pd.factorize(frame[c], use_na_sentinel=False) for c in frame.columns]
        coded = distinct_coded_rows([(c, len(u)) for c, u in factorized], n)
        unique = frame.drop_duplicates().reset_index(drop=True)
        if coded is None:
            assert len(unique) == n
            continue
        first, inverse = coded
        distinct = frame.iloc[first].reset_index(drop=True)
        pd.testing.assert_frame_equal(distinct, unique)  # the same rows, first-seen order
        pd.testing.assert_frame_equal(distinct.iloc[inverse].reset_index(drop=True), frame)


class _Recording(Opaque):
    """A local model seen through its scores, keeping every frame it is asked to score."""

    def __init__(self, inner: Predictor, distinct: bool) -> None:
        super().__init__(inner)
        self.prefers_distinct_rows = distinct
        self.frames: list[pd.DataFrame] = []

    def margin(self, frame: pd.DataFrame) -> np.ndarray:
        self.frames.append(frame)
        return super().margin(frame)


@pytest.mark.parametrize("name", ["german-credit", "german-credit-logit"])
def test_sampling_shap_sends_each_hybrid_row_once_when_rows_are_dear(
    demo_models: dict[str, LoadedModel], name: str
) -> None:
    """A predictor that prefers distinct rows (a remote one) is sent the very rows the
    remote predictor's own de-duplication would send, and the estimate is unchanged."""
    model = demo_models[name]
    background = model.reference.iloc[:50]
    row = model.reference.iloc[[120]]
    estimates, sent = {}, {}
    for distinct in (False, True):
        predictor = _Recording(model.predictor, distinct)
        engine = PermutationShap(predictor, background, "log_odds", permutations=16)
        estimates[distinct] = engine.explain_row(row, seed=7)
        sent[distinct] = predictor.frames[-1]
    everything, _ = distinct_rows(sent[False])
    assert len(sent[True]) == len(everything) < len(sent[False]) / 2
    assert not sent[True].duplicated().any()
    pd.testing.assert_frame_equal(sent[True], everything)
    np.testing.assert_array_equal(estimates[True].values, estimates[False].values)
    np.testing.assert_array_equal(estimates[True].std_error, estimates[False].std_error)
    assert estimates[True].base_value == estimates[False].base_value
