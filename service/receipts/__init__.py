"""Receipts: the stored record of every adverse-action response, for replay and audit."""
