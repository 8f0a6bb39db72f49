"""Learners that train a model with local rules instead of ``loss.backward()``."""
from .naca import NACA

__all__ = ["NACA"]
