"""The interface every explanation method implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import pandas as pd
from pydantic import BaseModel, ConfigDict

from service.registry.loaded import LoadedModel

CONSTRAINTS = "x-constraints"


def checked(rule: str) -> dict[str, str]:
    """JSON-schema extra of a field the service checks beyond its JSON schema (against
    the model's manifest, or across values): the contract states the rule, and a request
    breaking it is answered 422 naming the field."""
    return {CONSTRAINTS: rule}


class MethodOptions(BaseModel):
    """Base of a method's options: unknown options are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Explainer(ABC):
    """Built once per (model version, options) in a worker; then explains many rows.

    Subclasses set ``method`` and ``Options`` and may override :meth:`supports`.
    """

    method: ClassVar[str]
    Options: ClassVar[type[MethodOptions]]

    def __init__(self, model: LoadedModel, options: MethodOptions) -> None:
        self.model = model
        self.options = options

    @classmethod
    def supports(cls, model: LoadedModel) -> bool:
        """Whether this method can explain ``model`` at all."""
        return True

    @abstractmethod
    def explain(self, frame: pd.DataFrame, seeds: list[int]) -> list[dict[str, Any]]:
        """One JSON-able explanation per row of ``frame``; ``seeds[i]`` seeds row i."""
