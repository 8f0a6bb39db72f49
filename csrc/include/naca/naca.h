// The C++ API of torch_plugin's `naca` operators: #include <naca/naca.h> and
// link TorchPluginNaca::naca (docs/cpp.md).
//
//   naca::ops::   one function per operator, as torch_plugin.ops in Python
//   naca::nn::    spiking layers (LIF, NACASpikingLinear, BernoulliEncoder, SpikeRate, STPSynapse)
//   naca::learn:: SBP
//   naca::models:: spiking_mlp, sbp_snn
#pragma once

#include <naca/ops.h>
#include <naca/nn/spiking.h>
#include <naca/learn/sbp.h>
#include <naca/models/spiking.h>
