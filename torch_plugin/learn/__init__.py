"""Learners that train a model with local rules instead of ``loss.backward()``."""
from .compiled import compile_step
from .naca import NACA
from .sbp import SBP

__all__ = ["NACA", "SBP", "compile_step"]
