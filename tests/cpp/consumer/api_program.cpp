#include <naca/naca.h>
#include <torch/torch.h>
int main() {
  torch::Tensor E = naca::ops::expectation_matrix(10);                    // (10, 20)
  torch::Tensor f = naca::ops::modulation(torch::rand({4, 100}));         // lam 0.5, theta 1.2
  auto [spikes, volts] = naca::ops::lif_forward(torch::rand({20, 4, 100}));
  torch::Tensor w = torch::randn({100, 64}), b = torch::zeros({100}), x = torch::rand({32, 64});
  torch::Tensor y = torch::randint(0, 10, {32}, torch::kLong), ni = torch::rand({20, 100});
  naca::ops::naca_hidden_update_(w, b, x, x.mm(w.t()), y, ni, "tanh", 0.01);
  torch::nn::Sequential model(
      naca::nn::NACALinear(naca::nn::NACALinearOptions(64, 100, 10).activation("tanh").seed(0)),
      naca::nn::NACAOutput(naca::nn::NACAOutputOptions(100, 10)));
  naca::learn::NACA learner(model, naca::learn::NACAOptions().lr(0.01));
  torch::Tensor logits = learner.step(x, y);                              // (32, 10), no backward()
  torch::save(model, "model.pt");
}
