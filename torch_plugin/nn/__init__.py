"""Drop-in layers whose weights the plugin's learners update with local rules."""
from .common import make_ni
from .conv import NACAConv2d
from .linear import NACALinear, NACAOutput
from .spiking import (LIF, BernoulliEncoder, NACASpikingLinear, SpikeRate, STPSynapse, homeostatic_relax,
                      homeostatic_relax_torch, stp_forward, stp_forward_torch, surrogate_spike)

__all__ = ["NACALinear", "NACAOutput", "NACAConv2d", "make_ni",
           "LIF", "NACASpikingLinear", "BernoulliEncoder", "SpikeRate", "STPSynapse",
           "stp_forward", "stp_forward_torch", "homeostatic_relax", "homeostatic_relax_torch", "surrogate_spike"]
