#include "wsm/trainer/activations.h"

#include <string>

#include "wsm/core/error.h"

namespace wsm::trainer {

ActivationSizes activation_sizes(const GptConfig& cfg, int B, int T) {
  ActivationSizes s;
  s.bt = std::size_t(B) * T;
  s.btc = s.bt * cfg.n_embd;
  s.att = std::size_t(B) * cfg.n_head * std::size_t(T) * T;
  s.btv = s.bt * cfg.vocab_size;
  s.layers = std::size_t(cfg.n_layer);
  return s;
}

void check_config(const GptConfig& cfg) {
  if (cfg.vocab_size <= 0 || cfg.block_size <= 0 || cfg.n_layer <= 0 || cfg.n_embd <= 0)
    throw Error("GPT config: vocab_size, block_size, n_layer and n_embd must be > 0");
  if (cfg.n_head <= 0 || cfg.n_embd % cfg.n_head != 0)
    throw Error("GPT config: n_head must be > 0 and divide n_embd (" + std::to_string(cfg.n_embd) + " by " +
                std::to_string(cfg.n_head) + ")");
}

void check_batch(const GptConfig& cfg, std::span<const std::int32_t> tokens, std::span<const std::int32_t> targets,
                 int B, int T, Targets targets_rule) {
  check_config(cfg);
  if (T <= 0 || T > cfg.block_size || B <= 0) throw Error("GPT forward: need 0 < T <= block_size and B > 0");
  if (tokens.size() != std::size_t(B) * T) throw Error("GPT forward: tokens must hold B*T entries");
  if (targets.empty() && targets_rule == Targets::kRequired) throw Error("GPT forward: a training step needs targets");
  if (!targets.empty() && targets.size() != tokens.size()) throw Error("GPT forward: targets must hold B*T entries");
  for (auto t : tokens)
    if (t < 0 || t >= cfg.vocab_size) throw Error("GPT forward: token id out of vocabulary");
  for (auto t : targets)
    if (t < 0 || t >= cfg.vocab_size) throw Error("GPT forward: target id out of vocabulary");
}

}  // namespace wsm::trainer
