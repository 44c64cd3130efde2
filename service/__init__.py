"""Explanation service for lending models."""

__version__ = "0.1.0"
