"""Adverse-action decisions: principal reasons against a policy baseline, recourse that
addresses them, a fairness probe over protected features, and notices."""
