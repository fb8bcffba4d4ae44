#include "wsm/trainer/model.h"

#include <cmath>
#include <string>

#include "wsm/core/error.h"
#include "trainer/rng.h"

namespace wsm::trainer {

Preset preset(const std::string& name) {
  Preset p;
  if (name == "tiny") {
    p.model = {.vocab_size = 0, .block_size = 32, .n_layer = 2, .n_head = 2, .n_embd = 32};
    p.batch_size = 8;
    p.peak_lr = 3e-3;
    p.warmup = 20;
  } else if (name == "small") {
    p.model = {.vocab_size = 0, .block_size = 128, .n_layer = 4, .n_head = 4, .n_embd = 128};
    p.batch_size = 16;
    p.peak_lr = 2e-3;
    p.warmup = 100;
  } else if (name == "medium") {
    p.model = {.vocab_size = 0, .block_size = 256, .n_layer = 6, .n_head = 6, .n_embd = 384};
    p.batch_size = 32;
    p.peak_lr = 1e-3;
    p.warmup = 200;
  } else if (name == "large") {
    p.model = {.vocab_size = 0, .block_size = 512, .n_layer = 12, .n_head = 12, .n_embd = 768};
    p.batch_size = 32;
    p.peak_lr = 6e-4;
    p.warmup = 500;
  } else {
    throw Error("unknown preset '" + name + "' (expected tiny, small, medium or large)");
  }
  return p;
}

std::vector<ParamSpec> param_layout(const GptConfig& cfg) {
  const std::int64_t V = cfg.vocab_size, T = cfg.block_size, C = cfg.n_embd;
  std::vector<ParamSpec> out;
  std::size_t off = 0;
  auto add = [&](std::string name, std::vector<std::int64_t> shape) {
    std::size_t n = 1;
    for (auto d : shape) n *= std::size_t(d);
    bool decay = shape.size() == 2;
    out.push_back({std::move(name), std::move(shape), off, n, decay});
    off += n;
  };
  add("wte", {V, C});
  add("wpe", {T, C});
  for (int l = 0; l < cfg.n_layer; ++l) {
    const std::string h = "h." + std::to_string(l) + ".";
    add(h + "ln_1.weight", {C});
    add(h + "ln_1.bias", {C});
    add(h + "attn.c_attn.weight", {3 * C, C});
    add(h + "attn.c_attn.bias", {3 * C});
    add(h + "attn.c_proj.weight", {C, C});
    add(h + "attn.c_proj.bias", {C});
    add(h + "ln_2.weight", {C});
    add(h + "ln_2.bias", {C});
    add(h + "mlp.c_fc.weight", {4 * C, C});
    add(h + "mlp.c_fc.bias", {4 * C});
    add(h + "mlp.c_proj.weight", {C, 4 * C});
    add(h + "mlp.c_proj.bias", {C});
  }
  add("ln_f.weight", {C});
  add("ln_f.bias", {C});
  return out;
}

std::size_t num_params(const GptConfig& cfg) {
  auto layout = param_layout(cfg);
  return layout.back().offset + layout.back().numel;
}

std::vector<float> init_params(const GptConfig& cfg, std::uint64_t seed) {
  std::vector<float> p(num_params(cfg), 0.0f);
  const double proj_std = 0.02 / std::sqrt(2.0 * cfg.n_layer);
  std::uint64_t stream = 0;
  for (const auto& spec : param_layout(cfg)) {
    ++stream;  // one random stream per tensor: adding a layer does not shift the others
    const auto& n = spec.name;
    bool is_ln_weight = n.ends_with("ln_1.weight") || n.ends_with("ln_2.weight") || n == "ln_f.weight";
    bool is_bias = n.ends_with(".bias");
    if (is_ln_weight) {
      for (std::size_t i = 0; i < spec.numel; ++i) p[spec.offset + i] = 1.0f;
    } else if (!is_bias) {
      double std = n.ends_with("c_proj.weight") ? proj_std : 0.02;
      for (std::size_t i = 0; i < spec.numel; ++i) p[spec.offset + i] = float(std * normal(seed, stream, i));
    }
  }
  return p;
}

std::map<std::string, std::string> config_to_meta(const GptConfig& cfg) {
  return {{"model.arch", "gpt"},
          {"model.vocab_size", std::to_string(cfg.vocab_size)},
          {"model.block_size", std::to_string(cfg.block_size)},
          {"model.n_layer", std::to_string(cfg.n_layer)},
          {"model.n_head", std::to_string(cfg.n_head)},
          {"model.n_embd", std::to_string(cfg.n_embd)}};
}

GptConfig config_from_meta(const std::map<std::string, std::string>& extra, const std::string& source) {
  auto get = [&](const std::string& key) {
    auto it = extra.find(key);
    if (it == extra.end()) throw Error(source + ": metadata has no '" + key + "' (not a wsm trainer checkpoint?)");
    try {
      return std::stoi(it->second);
    } catch (const std::exception&) {
      throw Error(source + ": metadata '" + key + "' is not an integer: '" + it->second + "'");
    }
  };
  GptConfig cfg{.vocab_size = get("model.vocab_size"),
                .block_size = get("model.block_size"),
                .n_layer = get("model.n_layer"),
                .n_head = get("model.n_head"),
                .n_embd = get("model.n_embd")};
  if (cfg.vocab_size <= 0 || cfg.block_size <= 0 || cfg.n_layer <= 0 || cfg.n_head <= 0 || cfg.n_embd <= 0 ||
      cfg.n_embd % cfg.n_head != 0)
    throw Error(source + ": inconsistent model config in metadata");
  return cfg;
}

}  // namespace wsm::trainer
