"""Artifacts that are wrong in ways a loader does not notice: a skops file whose tree
points outside itself (segfaults scikit-learn's compiled predictor), a LightGBM text model
with a broken tree (aborts LightGBM's loader), a file in another format than declared."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import numpy as np
import skops.io
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OrdinalEncoder
from sklearn.tree import DecisionTreeClassifier

from .toy import (
    FEATURES,
    HOUSING,
    Candidate,
    lightgbm_candidate,
    manifest_dict,
    synthetic_data,
    write_candidate,
)


def tree_pipeline() -> object:
    data = synthetic_data()
    columns = ColumnTransformer(
        [("cat", OrdinalEncoder(categories=[HOUSING]), ["housing"])], remainder="passthrough"
    )
    model = make_pipeline(columns, DecisionTreeClassifier(max_depth=4, random_state=0))
    return model.fit(data[FEATURES], data["outcome"])


def corrupt_tree_nodes(skops_bytes: bytes, node: int = 0, child: int = 10**6) -> bytes:
    """The same skops archive with one node's children pointing past the tree's end."""
    source = zipfile.ZipFile(io.BytesIO(skops_bytes))
    out = io.BytesIO()
    changed = False
    with zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            if name.endswith(".npy"):
                array = np.load(io.BytesIO(data), allow_pickle=False)
                if array.dtype.names and "left_child" in array.dtype.names:
                    array["left_child"][node] = child
                    array["right_child"][node] = child
                    buffer = io.BytesIO()
                    np.save(buffer, array, allow_pickle=False)
                    data, changed = buffer.getvalue(), True
            target.writestr(name, data)
    assert changed, "no tree node array in the archive"
    return out.getvalue()


def corrupted_tree_candidate(folder: Path, name: str = "toy-bad-tree") -> Candidate:
    """A skops pipeline of trusted types only, whose decision tree points outside itself."""
    model = tree_pipeline()
    spec = manifest_dict(name, "skops", evaluation=False)
    buffer = io.BytesIO()
    skops.io.dump(model, buffer)
    write_candidate(folder, spec, synthetic_data(), artifact=corrupt_tree_nodes(buffer.getvalue()))
    return Candidate(folder, spec, model, synthetic_data(), lambda f: f)


def aborting_lightgbm_candidate(folder: Path, name: str = "toy-abort") -> Candidate:
    """A LightGBM text model whose first tree is broken: LightGBM's loader aborts the
    process (SIGABRT, 'terminate called') instead of raising."""
    candidate = lightgbm_candidate(folder, name)
    path = folder / "model.txt"
    text = re.sub(r"left_child=-?\d+", "left_child=99999", path.read_text(), count=1)
    path.write_text(text)
    return candidate


def skops_declared_as_xgboost(folder: Path, name: str = "toy-not-xgb") -> Candidate:
    """A real skops archive under a manifest that says xgboost-json."""
    spec = manifest_dict(name, "xgboost-json", evaluation=False)
    buffer = io.BytesIO()
    skops.io.dump(tree_pipeline(), buffer)
    write_candidate(folder, spec, synthetic_data(), artifact=buffer.getvalue())
    return Candidate(folder, spec, None, synthetic_data(), lambda f: f)
