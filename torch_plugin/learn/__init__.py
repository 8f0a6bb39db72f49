"""Learners that train a model with local rules instead of ``loss.backward()``."""
from .compiled import compile_step
from .gate import InputGate
from .naca import NACA
from .sbp import SBP

__all__ = ["NACA", "SBP", "InputGate", "compile_step"]
