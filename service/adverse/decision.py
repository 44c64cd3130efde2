"""One adverse-action decision per applicant: decision, principal reasons, recourse,
evidence and (for a denial) the notice text."""

from __future__ import annotations

from typing import Any

import pandas as pd

from service.adverse.baseline import policy_baseline
from service.adverse.fairness import fairness_probe
from service.adverse.options import NEEDS_CLASSIFIER, AdverseActionOptions
from service.adverse.proxy import proxy_warning
from service.adverse.reasons import Contribution, principal_reasons
from service.adverse.recourse import RecourseFinder, plain
from service.errors import invalid
from service.explainers.shap import ShapExplainer
from service.explainers.shap.options import ShapOptions
from service.registry.loaded import LoadedModel
from service.registry.notice import render_notice

APPROVED, DENIED = "approved", "denied"


class AdverseActionEngine:
    """Built once per (model version, options) in a worker: the baseline, an attribution
    explainer measuring against it, and the recourse search."""

    def __init__(self, model: LoadedModel, options: AdverseActionOptions) -> None:
        if not model.predictor.is_classifier:
            raise invalid(("path", "name"), NEEDS_CLASSIFIER)
        self.model, self.options = model, options
        self.threshold = model.manifest.decision_threshold
        self.min_reason_share = (
            options.min_reason_share
            if options.min_reason_share is not None
            else model.manifest.min_reason_share
        )
        self.baseline = policy_baseline(model, options.baseline or model.manifest.policy_baseline)
        self.shap = ShapExplainer(
            model.with_reference(self.baseline.rows),
            ShapOptions(output="log_odds"),
            population="baseline rows",
        )
        self.recourse = (
            RecourseFinder(model, options.recourse) if options.recourse.enabled else None
        )

    def decide(
        self, frame: pd.DataFrame, seeds: list[int], application_ids: list[str | None]
    ) -> list[dict[str, Any]]:
        """One decision document per row (``receipt_id`` is added by the caller)."""
        scores = self.model.predictor.probability(frame)
        attributions = self.shap.explain(frame, seeds)
        return [
            self._one(
                frame.iloc[[i]].reset_index(drop=True), float(scores[i]), attributions[i], seeds[i]
            )
            | ({"application_id": application_ids[i]} if application_ids[i] else {})
            for i in range(len(frame))
        ]

    def _one(
        self, applicant: pd.DataFrame, score: float, shap: dict[str, Any], seed: int
    ) -> dict[str, Any]:
        approved = score >= self.threshold
        contributions = [
            Contribution(a["feature"], a["value"], -a["contribution"]) for a in shap["attributions"]
        ]
        reasons: list[dict[str, Any]] = []
        warning = recourse = materiality = None
        if not approved:
            reasons, materiality = principal_reasons(
                self.model,
                self.baseline,
                contributions,
                self.options.max_reasons,
                self.min_reason_share,
            )
            warning = proxy_warning(self.model, contributions, self.options.proxy_share)
            if self.recourse is not None:
                recourse = self.recourse.find(applicant, reasons, seed)
        validity = [option.pop("valid") for option in (recourse or {}).get("options", [])]
        return {
            "decision": APPROVED if approved else DENIED,
            "score": score,
            "threshold": self.threshold,
            "baseline": self.baseline.summary(),
            "attribution": {
                "method": self.shap.algorithm,
                "output_space": shap["output_space"],
                "favourable_class": self.model.manifest.favourable_class,
                "base_value": shap["base_value"],
                "background": self.shap.background.summary(),
                **self._attribution_notes(),
                "attributions": shap["attributions"],
            },
            "reasons": reasons,
            "materiality": materiality,
            "proxy_warning": warning,
            "recourse": recourse,
            "evidence": {
                "additivity_error": shap["evidence"]["additivity_error"],
                "recourse_validity": validity,
                "fairness_probe": fairness_probe(self.model, applicant, approved),
                "seed": seed,
            },
        }

    def _attribution_notes(self) -> dict[str, Any]:
        notes: dict[str, Any] = {}
        if self.shap.implementation is not None:
            notes["implementation"] = self.shap.implementation
        if self.shap.fallback_reason:
            notes["fallback_reason"] = self.shap.fallback_reason
        return notes


def notice_text(model: LoadedModel, document: dict[str, Any]) -> str | None:
    """The manifest's notice for a denied applicant's decision document (None if approved)."""
    if document["decision"] != DENIED:
        return None
    reasons = [f"- {r['code']} {r['statement']}" for r in document["reasons"]]
    options = (document.get("recourse") or {}).get("options") or []
    recourse = [f"- {o['text']}" for o in options] or ["- none found"]
    return render_notice(
        model.manifest.notice_template,
        {
            "application_id": document.get("application_id") or "not given",
            "model": model.manifest.name,
            "version": model.version.version_id,
            "score": f"{document['score']:.3f}",
            "threshold": plain(document["threshold"]),
            "reasons": "\n".join(reasons) or "- no reason could be attributed",
            "recourse": "\n".join(recourse),
            "receipt_id": document["receipt_id"],
        },
    )
