"""Learners that train a model with local rules instead of ``loss.backward()``."""
from .naca import NACA
from .sbp import SBP

__all__ = ["NACA", "SBP"]
