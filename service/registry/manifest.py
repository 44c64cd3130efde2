"""The model manifest: what an explanation needs and what a lender must control."""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from service.errors import InvalidRequestError, Issue
from service.registry.catalogue import category_reason_problem, code_conflicts, cut_points_problem
from service.registry.manifest_text import load_document
from service.registry.notice import template_problem
from service.registry.placeholders import placeholder_issues_in
from service.registry.remote.spec import RemoteArtifact

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
# Reg B asks for the principal reasons: by default a reason carrying less than this share
# of the total push toward denial is not stated (see service/adverse/reasons.py).
DEFAULT_MIN_REASON_SHARE = 0.05
FILE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


class Task(StrEnum):
    binary_classification = "binary_classification"
    regression = "regression"


class FeatureType(StrEnum):
    numeric = "numeric"
    categorical = "categorical"
    ordinal = "ordinal"


class Direction(StrEnum):
    """Which way recourse may move a mutable feature (for ordinals: along ``categories``)."""

    increase = "increase"
    decrease = "decrease"
    any = "any"


class PolicyBaseline(StrEnum):
    """Whom an applicant is compared with when reasons are ranked."""

    approved = "approved"  # reference rows this version approves
    reference = "reference"  # all reference rows


class ArtifactFormat(StrEnum):
    skops = "skops"
    xgboost_json = "xgboost-json"
    xgboost_ubj = "xgboost-ubj"
    lightgbm_text = "lightgbm-text"
    joblib = "joblib"


SAFE_FORMATS = frozenset(
    {
        ArtifactFormat.skops,
        ArtifactFormat.xgboost_json,
        ArtifactFormat.xgboost_ubj,
        ArtifactFormat.lightgbm_text,
    }
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReasonCode(_Strict):
    """An adverse-action reason: a short code and the statement given to the applicant."""

    code: Annotated[str, Field(min_length=1, max_length=32)]
    statement: Annotated[str, Field(min_length=1, max_length=300)]


class CategoryReason(ReasonCode):
    """The reason stated when the applicant's value is one of ``categories``."""

    categories: Annotated[list[str], Field(min_length=1)]


class Feature(_Strict):
    """One raw input feature of the model."""

    name: Annotated[str, Field(min_length=1, max_length=128)]
    type: FeatureType
    description: str = ""
    categories: list[str] | None = Field(
        None, description="Allowed values of a categorical/ordinal feature (ordinals: in order)."
    )
    range: tuple[float, float] | None = Field(None, description="Allowed [min, max] of a numeric.")
    integer: bool = Field(False, description="Numeric values must be whole numbers.")
    mutable: bool = Field(True, description="The applicant can change it (recourse).")
    direction: Direction = Direction.any
    protected: bool = Field(False, description="Never a reason, never changed in recourse.")
    reason: ReasonCode | None = None
    reason_if_higher: ReasonCode | None = Field(
        None, description="Reason when the value is above the policy baseline's (numeric, ordinal)."
    )
    reason_if_lower: ReasonCode | None = Field(
        None, description="Reason when the value is below the policy baseline's (numeric, ordinal)."
    )
    reason_by_category: list[CategoryReason] | None = Field(
        None,
        description="Categorical/ordinal: the reason per category or group of categories, "
        "so a statement fits the applicant's value; categories not listed use 'reason'.",
    )
    cut_points: list[float] | None = Field(
        None,
        max_length=100,
        description="Numeric: interval edges for rule explanations (Anchors); default: "
        "quantiles of the reference data.",
    )

    @field_validator("reason_by_category")
    @classmethod
    def _reason_by_category(
        cls, entries: list[CategoryReason] | None, info: ValidationInfo
    ) -> list[CategoryReason] | None:
        if entries is None:
            return None
        if info.data.get("type") is FeatureType.numeric:
            raise ValueError("reason_by_category applies to categorical and ordinal features")
        if info.data.get("protected"):
            raise ValueError("a protected feature is never a reason; it takes no reason codes")
        if info.data.get("reason_if_higher") or info.data.get("reason_if_lower"):
            raise ValueError("use reason_by_category or reason_if_higher/lower, not both")
        fallback = info.data.get("reason") is not None
        problem = category_reason_problem(entries, info.data.get("categories"), fallback)
        if problem:
            raise ValueError(problem)
        return entries

    @field_validator("cut_points")
    @classmethod
    def _cut_points(cls, points: list[float] | None, info: ValidationInfo) -> list[float] | None:
        if points is None:
            return None
        if info.data.get("type") not in (None, FeatureType.numeric):
            raise ValueError("cut_points apply to numeric features")
        problem = cut_points_problem(points, info.data.get("range"))
        if problem:
            raise ValueError(problem)
        return points

    @property
    def reason_codes(self) -> list[ReasonCode]:
        """Every reason this feature can be stated with."""
        codes = [self.reason, self.reason_if_higher, self.reason_if_lower]
        return [c for c in codes if c is not None] + list(self.reason_by_category or [])

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        directional = self.reason_if_higher is not None or self.reason_if_lower is not None
        if directional and self.type is FeatureType.categorical:
            raise ValueError("reason_if_higher/reason_if_lower apply to numeric and ordinal only")
        if directional and self.protected:
            raise ValueError("a protected feature is never a reason; it takes no reason codes")
        if self.type is FeatureType.numeric:
            if self.categories is not None:
                raise ValueError("a numeric feature has a range, not categories")
            if self.range is not None:
                low, high = self.range
                if not (math.isfinite(low) and math.isfinite(high)) or low > high:
                    raise ValueError("range must be two finite numbers [min, max] with min <= max")
        else:
            if not self.categories:
                raise ValueError(f"a {self.type} feature needs a non-empty list of categories")
            if len(set(self.categories)) != len(self.categories):
                raise ValueError("categories must be unique")
            if self.range is not None or self.integer:
                raise ValueError(f"a {self.type} feature has categories, not range/integer")
            if self.type is FeatureType.categorical and self.direction is not Direction.any:
                raise ValueError("direction applies to numeric and ordinal features only")
        if self.protected and self.mutable:
            raise ValueError("a protected feature must have mutable: false")
        if self.protected and self.reason is not None:
            raise ValueError("a protected feature is never a reason; it takes no reason code")
        if not self.protected and self.reason is None and not self.reason_by_category:
            raise ValueError(
                "a non-protected feature needs an adverse-action reason (code, statement) "
                "or reason_by_category"
            )
        return self


class DataFile(_Strict):
    """A CSV file of the version: reference (background) or evaluation rows."""

    path: Annotated[str, Field(pattern=FILE_PATTERN)]
    description: str = ""


BOOSTER_FORMATS = frozenset(
    {ArtifactFormat.xgboost_json, ArtifactFormat.xgboost_ubj, ArtifactFormat.lightgbm_text}
)


class Artifact(_Strict):
    path: Annotated[str, Field(pattern=FILE_PATTERN)]
    format: ArtifactFormat = Field(
        ..., description="The file's format; 'remote' instead declares a model server."
    )
    trusted: bool = Field(
        False, description="Allows joblib/pickle for an operator's local model; never over HTTP."
    )
    positive_class: str | None = Field(
        None,
        description="The class whose score the artifact outputs (a booster's label 1). Boosters "
        "default to classes[1]; scikit-learn models take it from classes_ (classes_[1]).",
    )

    @property
    def is_booster(self) -> bool:
        return self.format in BOOSTER_FORMATS


def _artifact_kind(value: Any) -> str:
    kind = value.get("format") if isinstance(value, dict) else getattr(value, "format", None)
    return "remote" if kind == "remote" else "local"


# A local artifact file (an ArtifactFormat), or a model server (``format: remote``,
# service/registry/remote/spec.py).
AnyArtifact = Annotated[
    Annotated[Artifact, Tag("local")] | Annotated[RemoteArtifact, Tag("remote")],
    Discriminator(_artifact_kind),
]


class Manifest(_Strict):
    """A model version's manifest (``manifest.yaml``)."""

    schema_version: Literal[1] = 1
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    description: str = ""
    task: Task
    target: str | None = Field(None, description="Label column in reference/evaluation data.")
    classes: list[str] | None = Field(
        None,
        validate_default=True,
        description="The two class labels. Boosters: [negative, positive], the raw score being "
        "for classes[1] unless artifact.positive_class says otherwise; scikit-learn models: "
        "any order (the estimator's classes_ decide).",
    )
    favourable_class: str | None = Field(None, validate_default=True)
    decision_threshold: Annotated[float, Field(gt=0, lt=1)] = 0.5
    artifact: AnyArtifact
    reference_data: DataFile
    evaluation_data: DataFile | None = None
    features: Annotated[list[Feature], Field(min_length=1, max_length=500)]
    metrics: dict[str, float] = Field(default_factory=dict)
    policy_baseline: PolicyBaseline = Field(
        PolicyBaseline.approved,
        description="Population adverse-action reasons are measured against (per request too).",
    )
    notice_template: Annotated[str, Field(min_length=1, max_length=20_000)] | None = Field(
        None,
        description="Adverse-action notice text with $placeholders (service/registry/notice.py).",
    )
    min_reason_share: Annotated[float, Field(ge=0, le=1)] = Field(
        DEFAULT_MIN_REASON_SHARE,
        description="A reason is stated only if it carries at least this share of the total "
        "push toward denial (per request too).",
    )

    # Rules across fields are field validators (on fields declared after the ones they
    # read), so an error is located at the field to fix.
    @field_validator("classes")
    @classmethod
    def _classes(cls, classes: list[str] | None, info: ValidationInfo) -> list[str] | None:
        task = info.data.get("task")
        if task is Task.binary_classification:
            if not classes or len(classes) != 2 or classes[0] == classes[1]:
                raise ValueError("binary_classification needs exactly two distinct classes")
        elif task is Task.regression and classes is not None:
            raise ValueError("regression takes no classes or favourable_class")
        return classes

    @field_validator("favourable_class")
    @classmethod
    def _favourable(cls, value: str | None, info: ValidationInfo) -> str | None:
        task = info.data.get("task")
        if task is Task.binary_classification and info.data.get("classes"):
            if value not in info.data["classes"]:
                raise ValueError("favourable_class must be one of classes")
        elif task is Task.regression and value is not None:
            raise ValueError("regression takes no classes or favourable_class")
        return value

    @field_validator("artifact")
    @classmethod
    def _positive_class(cls, artifact: Artifact, info: ValidationInfo) -> Artifact:
        positive, classes = getattr(artifact, "positive_class", None), info.data.get("classes")
        if positive is None:  # also every remote artifact: its output columns are the classes
            return artifact
        if info.data.get("task") is Task.regression:
            raise ValueError("positive_class applies to classifiers; regression takes none")
        if classes and positive not in classes:
            raise ValueError(f"positive_class '{positive}' must be one of classes {classes}")
        return artifact

    @field_validator("notice_template")
    @classmethod
    def _notice_template(cls, text: str | None) -> str | None:
        problem = None if text is None else template_problem(text)
        if problem:
            raise ValueError(problem)
        return text

    @field_validator("features")
    @classmethod
    def _unique_features(cls, features: list[Feature], info: ValidationInfo) -> list[Feature]:
        names = [f.name for f in features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate feature names: {dupes}")
        target = info.data.get("target")
        if target is not None and target in names:
            raise ValueError("target must not also be a feature")
        conflicts = code_conflicts([c for f in features for c in f.reason_codes])
        if conflicts:
            raise ValueError(
                f"reason codes {conflicts} have different statements: a code states one reason"
            )
        return features

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        files = [self.artifact.path, self.reference_data.path]
        if self.evaluation_data is not None:
            files.append(self.evaluation_data.path)
        if "manifest.yaml" in files or len(set(files)) != len(files):
            raise ValueError("artifact, reference and evaluation files must be distinct files")
        return self

    @property
    def is_remote(self) -> bool:
        """The model runs in a model server; ``artifact.path`` is its fingerprint file."""
        return isinstance(self.artifact, RemoteArtifact)

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def positive_class(self) -> str | None:
        """The class a booster's raw score is for: ``artifact.positive_class`` or
        ``classes[1]`` (None for regression)."""
        if self.classes is None:
            return None
        return getattr(self.artifact, "positive_class", None) or self.classes[1]

    @property
    def unfavourable_class(self) -> str | None:
        if self.classes is None:
            return None
        return next(c for c in self.classes if c != self.favourable_class)

    def feature(self, name: str) -> Feature:
        return next(f for f in self.features if f.name == name)

    def data_files(self) -> list[str]:
        """Files the version consists of, besides the manifest itself."""
        files = [self.artifact.path, self.reference_data.path]
        return files + ([self.evaluation_data.path] if self.evaluation_data else [])


def parse_manifest(text: str | bytes, loc: tuple[str | int, ...] = ("manifest",)) -> Manifest:
    """Parse YAML/JSON manifest text (bounded: see :mod:`.manifest_text`); errors name the
    offending field."""
    raw = load_document(text, loc)
    if not isinstance(raw, dict):
        raise InvalidRequestError([Issue(loc, "must be a mapping of manifest fields")])
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        # A draft's placeholders are reported all at once, in place of the errors they cause
        # (a placeholder favourable_class is not one of the classes).
        placeholders = placeholder_issues_in(raw, loc)
        at_placeholder = {issue.loc for issue in placeholders}
        issues = [Issue((*loc, *_untagged(e["loc"])), e["msg"], e["type"]) for e in exc.errors()]
        raise InvalidRequestError(
            placeholders + [issue for issue in issues if issue.loc not in at_placeholder]
        ) from exc


def _untagged(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """The field path without the artifact kind pydantic inserts (``artifact.remote.url``)."""
    if len(loc) > 1 and loc[0] == "artifact" and loc[1] in ("local", "remote"):
        return (loc[0], *loc[2:])
    return loc
