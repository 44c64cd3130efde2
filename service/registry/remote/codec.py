"""The wire formats: a frame of raw features out, a matrix of model outputs back.

Open Inference Protocol V2 (MLServer, KServe V2, Triton): one named input per raw
feature, ``BYTES`` for categoricals and ordinals, ``INT64`` for integer numerics, ``FP64``
for other numerics, and the request's content type ``pd`` so that MLServer's runtimes
decode the inputs into a pandas DataFrame (``mlserver/codecs/pandas.py``). KServe v1: one
JSON object per row under ``instances`` (KServe builds a DataFrame from dict instances).

Answers are checked before use: one output (or the one named), ``shape[0]`` equal to the
rows sent, as many numbers as the shape says, all finite. Anything else is a
:class:`MalformedResponse`, which the client treats like a failed call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson
import pandas as pd

from service.registry.manifest import Manifest
from service.registry.remote.spec import Protocol, RemoteArtifact, RemoteOutput

NUMERIC_TYPES = {"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64"} | {
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "BOOL",
}
OUTPUT_HINTS = {RemoteOutput.probability: ("prob",), RemoteOutput.margin: ("margin", "logit")}


class MalformedResponse(ValueError):
    """The endpoint answered, but not with what the protocol and the manifest promise."""


class Codec:
    """Encodes frames for one remote artifact and decodes its answers to (rows, columns)."""

    def __init__(self, manifest: Manifest, artifact: RemoteArtifact) -> None:
        self.artifact = artifact
        self.features = [(f.name, _datatype(f)) for f in manifest.features]
        base = artifact.url
        if artifact.protocol is Protocol.open_inference_v2:
            version = f"/versions/{artifact.version}" if artifact.version else ""
            self.path = f"{base}/v2/models/{artifact.model}{version}/infer"
        else:
            self.path = f"{base}/v1/models/{artifact.model}:predict"

    def encode(self, frame: pd.DataFrame) -> bytes:
        if self.artifact.protocol is Protocol.kserve_v1:
            return self._encode_v1(frame)
        return self._encode_v2(frame)

    def decode(self, body: bytes, rows: int) -> np.ndarray:
        """The outputs as a float matrix of ``rows`` rows."""
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise MalformedResponse(f"the answer is not JSON ({exc})") from exc
        if not isinstance(document, dict):
            raise MalformedResponse("the answer is not a JSON object")
        if self.artifact.protocol is Protocol.kserve_v1:
            return _checked(_decode_v1(document), rows)
        return _checked(self._decode_v2(document), rows)

    # --- V2
    def _encode_v2(self, frame: pd.DataFrame) -> bytes:
        n = len(frame)
        inputs = []
        for name, datatype in self.features:
            column = frame[name]
            if datatype == "BYTES":
                data: Any = column.astype(str).tolist()
                extra = {"parameters": {"content_type": "str"}}
            else:
                data, datatype = _numeric(column, datatype)
                extra = {}
            inputs.append(
                {"name": name, "shape": [n, 1], "datatype": datatype, **extra, "data": data}
            )
        body: dict[str, Any] = {"parameters": {"content_type": "pd"}, "inputs": inputs}
        if self.artifact.output_name:
            body["outputs"] = [{"name": self.artifact.output_name}]
        return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)

    def _decode_v2(self, document: Mapping[str, Any]) -> np.ndarray:
        outputs = document.get("outputs")
        if not isinstance(outputs, list) or not outputs:
            raise MalformedResponse("the answer has no 'outputs'")
        output = self._pick(outputs)
        datatype, shape, data = output.get("datatype"), output.get("shape"), output.get("data")
        if datatype not in NUMERIC_TYPES:
            raise MalformedResponse(
                f"output '{output.get('name')}' is {datatype}, not numbers; it may be class "
                "labels: name the probability output in artifact.output_name (MLServer's "
                "scikit-learn runtime: predict_proba)"
            )
        if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
            raise MalformedResponse(f"output '{output.get('name')}' has no valid shape")
        values = _numbers(data)
        if values.size != int(np.prod(shape)):
            raise MalformedResponse(
                f"output '{output.get('name')}' has {values.size} values for shape {shape}"
            )
        if len(shape) == 1:
            return values.reshape(-1, 1)
        if len(shape) != 2:
            raise MalformedResponse(f"output '{output.get('name')}' has shape {shape}")
        return values.reshape(shape[0], shape[1])

    def _pick(self, outputs: list[Any]) -> Mapping[str, Any]:
        named = [o for o in outputs if isinstance(o, dict)]
        wanted = self.artifact.output_name
        if wanted is not None:
            found = [o for o in named if o.get("name") == wanted]
            if not found:
                names = [o.get("name") for o in named]
                raise MalformedResponse(f"the answer has no output '{wanted}' (it has {names})")
            return found[0]
        if len(named) == 1:
            return named[0]
        hints = OUTPUT_HINTS[self.artifact.output]
        likely = [o for o in named if any(h in str(o.get("name", "")).lower() for h in hints)]
        if len(likely) == 1:
            return likely[0]
        names = [o.get("name") for o in named]
        raise MalformedResponse(
            f"the answer has outputs {names}; name the one to use in artifact.output_name"
        )

    # --- KServe v1
    def _encode_v1(self, frame: pd.DataFrame) -> bytes:
        columns = []
        for name, datatype in self.features:
            column = frame[name]
            if datatype == "BYTES":
                columns.append(column.astype(str).tolist())
            else:
                columns.append(_numeric(column, datatype)[0].tolist())
        names = [name for name, _ in self.features]
        instances = [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
        return orjson.dumps({"instances": instances})


def _decode_v1(document: Mapping[str, Any]) -> np.ndarray:
    predictions = document.get("predictions")
    if not isinstance(predictions, list):
        raise MalformedResponse("the answer has no 'predictions' list")
    values = _numbers(predictions)
    if values.ndim == 1:
        return values.reshape(-1, 1)
    if values.ndim != 2:
        raise MalformedResponse(f"'predictions' has {values.ndim} dimensions")
    return values


def _numbers(data: Any) -> np.ndarray:
    if not isinstance(data, list):
        raise MalformedResponse("an output's data is not a list")
    try:
        values = np.asarray(data, dtype=float)
    except (TypeError, ValueError) as exc:
        raise MalformedResponse(f"an output holds values that are not numbers ({exc})") from exc
    return values


def _checked(values: np.ndarray, rows: int) -> np.ndarray:
    if values.shape[0] != rows:
        raise MalformedResponse(f"the answer has {values.shape[0]} rows for {rows} sent")
    if values.shape[1] == 0:
        raise MalformedResponse("the answer has no columns")
    if not np.all(np.isfinite(values)):
        raise MalformedResponse("the answer holds NaN or infinite values")
    return values


def _numeric(column: pd.Series, datatype: str) -> tuple[np.ndarray, str]:
    """The column as INT64 when declared integer and whole, else as FP64 (exact)."""
    values = np.ascontiguousarray(column.to_numpy(dtype=np.float64))
    if datatype == "INT64" and np.all(values == np.round(values)):
        return values.astype(np.int64), "INT64"
    return values, "FP64"


def _datatype(feature: Any) -> str:
    if feature.type.value != "numeric":
        return "BYTES"
    return "INT64" if feature.integer else "FP64"
