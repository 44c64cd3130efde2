"""Safe loading of model artifacts: skops with an explicit trusted-type list, XGBoost
JSON/UBJ and LightGBM text. Pickle/joblib only for a local version marked trusted."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from service.registry.manifest import SAFE_FORMATS, ArtifactFormat, Manifest
from service.registry.predictors import (
    LightGBMPredictor,
    Predictor,
    SklearnPredictor,
    XGBoostPredictor,
)
from service.registry.tree_checks import check_trees

# Types beyond skops' own defaults that scikit-learn models need and that hold only data.
TRUSTED_SKOPS_TYPES: frozenset[str] = frozenset(
    {
        "sklearn.tree._tree.Tree",
        "sklearn._loss.link.LogitLink",
        "sklearn._loss.link.IdentityLink",
        "sklearn._loss.loss.HalfBinomialLoss",
        "sklearn._loss.loss.HalfSquaredError",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
        "collections.OrderedDict",
        # HistGradientBoosting with categorical_features validates its numeric columns with
        # partial(check_array, ...) inside its own ColumnTransformer
        "functools.partial",
        "sklearn.utils.validation.check_array",
    }
)


class UnsafeArtifactError(ValueError):
    """The artifact is not in a safe format or holds types nobody trusted."""


def load_predictor(
    manifest: Manifest, path: Path, source: str, extra_trusted: Iterable[str] = ()
) -> Predictor:
    """Load the artifact at ``path`` the safe way its manifest's format allows (a remote
    model's ``path`` is its fingerprint file: nothing is loaded, the endpoint is called)."""
    if manifest.is_remote:
        from service.registry.remote.load import open_remote

        return open_remote(manifest, path)
    fmt = manifest.artifact.format
    if fmt is ArtifactFormat.skops:
        return SklearnPredictor(
            manifest, _load_skops(path, TRUSTED_SKOPS_TYPES | set(extra_trusted))
        )
    if fmt in (ArtifactFormat.xgboost_json, ArtifactFormat.xgboost_ubj):
        import xgboost

        booster = xgboost.Booster()
        booster.load_model(str(path))
        return XGBoostPredictor(manifest, booster)
    if fmt is ArtifactFormat.lightgbm_text:
        import lightgbm

        return LightGBMPredictor(manifest, lightgbm.Booster(model_file=str(path)))
    if fmt is ArtifactFormat.joblib:
        if not manifest.artifact.trusted or source == "http":
            raise UnsafeArtifactError(
                "joblib/pickle artifacts load only for a local version whose manifest says "
                "artifact.trusted: true; use skops, XGBoost JSON/UBJ or LightGBM text"
            )
        import joblib

        return SklearnPredictor(manifest, joblib.load(path))
    raise UnsafeArtifactError(f"unsupported artifact format {fmt}")  # pragma: no cover


def check_upload_format(manifest: Manifest) -> None:
    """Refuse formats that may execute code: HTTP uploads must be in a safe format (a
    remote model uploads no artifact)."""
    if not manifest.is_remote and manifest.artifact.format not in SAFE_FORMATS:
        raise UnsafeArtifactError(
            f"artifact.format '{manifest.artifact.format}' cannot be uploaded over HTTP; "
            f"use one of {sorted(f.value for f in SAFE_FORMATS)}"
        )


def _load_skops(path: Path, trusted: set[str]) -> object:
    import skops.io

    untrusted = skops.io.get_untrusted_types(file=path)
    refused = sorted(set(untrusted) - trusted)
    if refused:
        raise UnsafeArtifactError(f"skops artifact holds untrusted types: {refused}")
    model = skops.io.load(path, trusted=sorted(set(untrusted)))
    check_trees(model)  # before any compiled predictor walks arrays that came from the file
    return model
