"""The adverse-action notice template a manifest may carry, and its rendering.

Templates use ``string.Template`` placeholders (``$reasons``, ``${receipt_id}``): plain
substitution, nothing evaluated, so an uploaded manifest cannot run code.
"""

from __future__ import annotations

from collections.abc import Mapping
from string import Template

NOTICE_FIELDS: dict[str, str] = {
    "application_id": "the lender's application reference (or 'not given')",
    "model": "model name",
    "version": "model version id",
    "score": "probability of the favourable class, 3 decimals",
    "threshold": "the decision threshold",
    "reasons": "the principal reasons, one '- CODE statement' line each",
    "recourse": "what could change the outcome, one line per option",
    "receipt_id": "the receipt that records this decision",
}

DEFAULT_TEMPLATE = """\
NOTICE OF ACTION TAKEN

Application: $application_id
Decision: your application for credit has been declined.

The principal reasons for this decision are:
$reasons

Changes that would have led to approval under the same model:
$recourse

This decision was made with a statistical credit model ($model, version $version).
The federal Equal Credit Opportunity Act prohibits creditors from discriminating against
credit applicants on the basis of race, color, religion, national origin, sex, marital
status or age. You may ask for a copy of the information this decision was based on.

Reference: $receipt_id
"""


def template_problem(text: str) -> str | None:
    """Why ``text`` is not a usable notice template, or None."""
    template = Template(text)
    if not template.is_valid():
        return "invalid placeholder syntax (write $name or ${name}; $$ for a dollar sign)"
    unknown = sorted(set(template.get_identifiers()) - set(NOTICE_FIELDS))
    if unknown:
        return f"unknown placeholders {unknown}; allowed: {sorted(NOTICE_FIELDS)}"
    return None


def render_notice(text: str | None, values: Mapping[str, str]) -> str:
    """The notice for one denied applicant (``text`` None: the default template)."""
    return Template(text or DEFAULT_TEMPLATE).substitute(values)
