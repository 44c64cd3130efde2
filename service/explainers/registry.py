"""Explicit registry of explanation methods (no class swapping by if/elif)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from service.errors import InvalidRequestError, Issue
from service.explainers.anchor import AnchorExplainer
from service.explainers.base import Explainer, MethodOptions
from service.explainers.counterfactual import CounterfactualExplainer
from service.explainers.lime import LimeExplainer
from service.explainers.shap import ShapExplainer
from service.registry.loaded import LoadedModel

METHODS: dict[str, type[Explainer]] = {
    cls.method: cls
    for cls in (ShapExplainer, LimeExplainer, AnchorExplainer, CounterfactualExplainer)
}


def method_names() -> list[str]:
    return sorted(METHODS)


def supported_methods(model: LoadedModel) -> list[str]:
    """The methods that can explain ``model``."""
    return sorted(m for m, cls in METHODS.items() if cls.supports(model))


def explainer_class(method: str) -> type[Explainer]:
    try:
        return METHODS[method]
    except KeyError:
        raise InvalidRequestError(
            [
                Issue(
                    ("body", "methods"),
                    f"unknown method '{method}'; valid: {method_names()}",
                    "enum",
                )
            ]
        ) from None


def parse_options(method: str, raw: dict[str, Any] | None) -> MethodOptions:
    """Validate one method's options; errors name ``options.<method>.<field>``."""
    cls = explainer_class(method)
    try:
        return cls.Options.model_validate(raw or {})
    except ValidationError as exc:
        raise InvalidRequestError(
            [
                Issue(("body", "options", method, *e["loc"]), e["msg"], e["type"])
                for e in exc.errors()
            ]
        ) from exc
