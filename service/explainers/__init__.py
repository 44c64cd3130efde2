"""Explanation methods, one module each behind :class:`~service.explainers.base.Explainer`."""
