// The C++ API of torch_plugin's `naca` operators: #include <naca/naca.h> and
// link TorchPluginNaca::naca (docs/cpp.md).
//
//   naca::ops::     one function per operator, as torch_plugin.ops in Python
//   naca::nn::      the layers (torch::nn modules), as torch_plugin.nn
//   naca::learn::   the learners (NACA, SBP), as torch_plugin.learn
//   naca::models::  ready-made networks (torch::nn::Sequential), as torch_plugin.models
#pragma once

#include <naca/ops.h>
#include <naca/nn/common.h>
#include <naca/nn/conv.h>
#include <naca/nn/linear.h>
#include <naca/nn/spiking.h>
#include <naca/learn/naca.h>
#include <naca/learn/sbp.h>
#include <naca/models.h>
#include <naca/models/spiking.h>
