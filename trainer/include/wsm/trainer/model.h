#pragma once
// GPT model configuration and the flat parameter layout shared by the CPU and CUDA backends and by
// checkpoints. All parameters live in one contiguous buffer, tensors in a fixed order; each tensor
// has a GPT-2 style name (`wte`, `wpe`, `h.0.ln_1.weight`, ...). Linear weights are [out, in]
// (torch.nn.Linear's convention), so `y = x W^T + b`.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace wsm::trainer {

struct GptConfig {
  int vocab_size = 0;
  int block_size = 128;  // maximum context length
  int n_layer = 4;
  int n_head = 4;
  int n_embd = 128;
  bool operator==(const GptConfig&) const = default;
};

// Training-side defaults that go with a model size.
struct Preset {
  GptConfig model;       // vocab_size filled in from the data
  int batch_size = 16;   // sequences per step
  double peak_lr = 1e-3;
  std::int64_t warmup = 100;
};

// "tiny" (tests, seconds), "small" (4 layers, width 128, ctx 128; minutes on 2 cores),
// "medium" and "large" (meant for a GPU). Throws wsm::Error on an unknown name.
Preset preset(const std::string& name);

struct ParamSpec {
  std::string name;
  std::vector<std::int64_t> shape;
  std::size_t offset = 0;  // in elements, into the flat buffer
  std::size_t numel = 0;
  bool decay = false;      // AdamW weight decay applies to matrices (rank 2) only
};

// Every parameter tensor in buffer order; the last entry ends at num_params(cfg).
std::vector<ParamSpec> param_layout(const GptConfig& cfg);
std::size_t num_params(const GptConfig& cfg);

// Named pointers into a flat buffer, so layers read `p.qkvw(l)` instead of offset arithmetic.
template <class F>
struct ParamView {
  GptConfig cfg;
  F* base = nullptr;
  F* wte() const { return base + off_wte; }
  F* wpe() const { return base + off_wpe; }
  F* ln1w(int l) const { return layer(l) + 0; }
  F* ln1b(int l) const { return layer(l) + C(); }
  F* qkvw(int l) const { return layer(l) + 2 * C(); }
  F* qkvb(int l) const { return qkvw(l) + 3 * C() * C(); }
  F* attprojw(int l) const { return qkvb(l) + 3 * C(); }
  F* attprojb(int l) const { return attprojw(l) + C() * C(); }
  F* ln2w(int l) const { return attprojb(l) + C(); }
  F* ln2b(int l) const { return ln2w(l) + C(); }
  F* fcw(int l) const { return ln2b(l) + C(); }
  F* fcb(int l) const { return fcw(l) + 4 * C() * C(); }
  F* fcprojw(int l) const { return fcb(l) + 4 * C(); }
  F* fcprojb(int l) const { return fcprojw(l) + 4 * C() * C(); }
  F* lnfw() const { return layer(cfg.n_layer); }
  F* lnfb() const { return lnfw() + C(); }

  ParamView(const GptConfig& c, F* b)
      : cfg(c), base(b), off_wpe(std::size_t(c.vocab_size) * c.n_embd),
        off_layers(off_wpe + std::size_t(c.block_size) * c.n_embd), layer_size(12 * C() * C() + 13 * C()) {}

 private:
  static constexpr std::size_t off_wte = 0;
  std::size_t off_wpe, off_layers, layer_size;
  std::size_t C() const { return std::size_t(cfg.n_embd); }
  F* layer(int l) const { return base + off_layers + std::size_t(l) * layer_size; }
};

// GPT-2 initialisation: N(0, 0.02) for matrices and embeddings, residual projections scaled by
// 1/sqrt(2 n_layer), LayerNorm weight 1, biases 0. Deterministic in `seed` on every platform.
std::vector<float> init_params(const GptConfig& cfg, std::uint64_t seed);

// The config as checkpoint metadata ("model.n_layer" = "4", ...) and back.
std::map<std::string, std::string> config_to_meta(const GptConfig& cfg);
GptConfig config_from_meta(const std::map<std::string, std::string>& extra, const std::string& source);

}  // namespace wsm::trainer
