#pragma once
// The activation layout and the batch check shared by the CPU model (GptCpu) and the CUDA model
// (GptCuda), so the two cannot drift: which buffers a forward pass keeps for the backward pass, how
// big each is for a [B, T] batch, where layer l's slice starts, and which batches are valid.
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>

#include "wsm/trainer/model.h"

namespace wsm::trainer {

// Sizes in elements. Buffers marked [L, ...] hold one slice per layer, layer l's at l * slice.
struct ActivationSizes {
  std::size_t bt = 0;   // positions B*T: LayerNorm statistics, per-position losses
  std::size_t btc = 0;  // [B*T, C]: LayerNorm outputs, attention output, projections, residuals
  std::size_t att = 0;  // [B, NH, T, T]: attention weights
  std::size_t btv = 0;  // [B*T, V]: logits and probabilities
  std::size_t layers = 0;
};
ActivationSizes activation_sizes(const GptConfig& cfg, int B, int T);

// Layer l's slices of the per-layer buffers: what one transformer block reads and writes.
template <class P>
struct LayerSlices {
  P residual;  // the block's input: the embeddings for layer 0, else the previous block's residual3
  P ln1, ln1_mean, ln1_rstd, qkv, atty, att, attproj, residual2, ln2, ln2_mean, ln2_rstd, fch, fch_gelu, fcproj,
      residual3;
};

// Every activation and gradient-scratch buffer of the model, of any buffer type with
// resize-to-zeros semantics (std::vector on the CPU, cuda::DeviceBuffer on the device).
template <class Buffer>
struct Activations {
  // kept by the forward pass, per layer where it says [L, ...]
  Buffer encoded;                          // [B*T, C]
  Buffer ln1, ln1_mean, ln1_rstd;          // [L, B*T, C], [L, B*T] x2
  Buffer qkv;                              // [L, B*T, 3C]
  Buffer atty, att, attproj, residual2;    // [L, B*T, C], [L, B, NH, T, T], [L, B*T, C] x2
  Buffer ln2, ln2_mean, ln2_rstd;          // as ln1
  Buffer fch, fch_gelu;                    // [L, B*T, 4C]
  Buffer fcproj, residual3;                // [L, B*T, C]
  Buffer lnf, lnf_mean, lnf_rstd;          // [B*T, C], [B*T] x2
  Buffer logits, probs, losses;            // [B*T, V] x2, [B*T]
  // gradient scratch, reused layer after layer
  Buffer dres, dln, dqkv, datty, dfch, dfch_gelu, dlogits;

  ActivationSizes sizes;  // of the last resize

  // Sizes every buffer for s; resize(buffer, n) must leave n zeroed elements.
  template <class Resize>
  void resize(const ActivationSizes& s, Resize&& resize) {
    sizes = s;
    const std::size_t L = s.layers;
    resize(encoded, s.btc);
    for (Buffer* b : {&ln1, &atty, &attproj, &residual2, &ln2, &fcproj, &residual3}) resize(*b, L * s.btc);
    for (Buffer* b : {&ln1_mean, &ln1_rstd, &ln2_mean, &ln2_rstd}) resize(*b, L * s.bt);
    resize(qkv, L * 3 * s.btc);
    resize(att, L * s.att);
    resize(fch, L * 4 * s.btc);
    resize(fch_gelu, L * 4 * s.btc);
    resize(lnf, s.btc);
    resize(lnf_mean, s.bt);
    resize(lnf_rstd, s.bt);
    resize(logits, s.btv);
    resize(probs, s.btv);
    resize(losses, s.bt);
    for (Buffer* b : {&dres, &dln, &datty}) resize(*b, s.btc);
    resize(dqkv, 3 * s.btc);
    resize(dfch, 4 * s.btc);
    resize(dfch_gelu, 4 * s.btc);
    resize(dlogits, s.btv);
  }

  // Layer l's slices; data(buffer) is the buffer's first element (std::vector::data, DeviceBuffer::get).
  template <class Data>
  auto layer(int l, Data&& data) {
    using P = decltype(data(encoded));
    const std::size_t i = std::size_t(l), btc = sizes.btc, bt = sizes.bt;
    LayerSlices<P> x;
    x.residual = l == 0 ? data(encoded) : data(residual3) + (i - 1) * btc;
    x.ln1 = data(ln1) + i * btc;
    x.ln1_mean = data(ln1_mean) + i * bt;
    x.ln1_rstd = data(ln1_rstd) + i * bt;
    x.qkv = data(qkv) + i * 3 * btc;
    x.atty = data(atty) + i * btc;
    x.att = data(att) + i * sizes.att;
    x.attproj = data(attproj) + i * btc;
    x.residual2 = data(residual2) + i * btc;
    x.ln2 = data(ln2) + i * btc;
    x.ln2_mean = data(ln2_mean) + i * bt;
    x.ln2_rstd = data(ln2_rstd) + i * bt;
    x.fch = data(fch) + i * 4 * btc;
    x.fch_gelu = data(fch_gelu) + i * 4 * btc;
    x.fcproj = data(fcproj) + i * btc;
    x.residual3 = data(residual3) + i * btc;
    return x;
  }
  // The last block's output, the final LayerNorm's input.
  template <class Data>
  auto last_residual(Data&& data) {
    return data(residual3) + (sizes.layers - 1) * sizes.btc;
  }
};

// Whether a forward pass needs targets: training does; logits-only passes (generation, probes) do not.
enum class Targets { kRequired, kOptional };

// Throws wsm::Error naming the problem: a config the layers cannot run (n_head not dividing n_embd,
// non-positive sizes), a batch shape outside 0 < T <= block_size, B > 0, token or target counts other
// than B*T (empty targets only when optional), ids outside the vocabulary.
void check_config(const GptConfig& cfg);
void check_batch(const GptConfig& cfg, std::span<const std::int32_t> tokens, std::span<const std::int32_t> targets,
                 int B, int T, Targets targets_rule);

}  // namespace wsm::trainer
