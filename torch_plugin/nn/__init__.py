"""Drop-in layers whose weights the plugin's learners update with local rules."""
from ._common import make_ni
from .conv import NACAConv2d
from .linear import NACALinear, NACAOutput

__all__ = ["NACALinear", "NACAOutput", "NACAConv2d", "make_ni"]
