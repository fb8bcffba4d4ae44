#include "wsm/trainer/checkpoint_io.h"

#include <cstring>

#include "wsm/core/error.h"

namespace wsm::trainer {
namespace {

std::vector<std::byte> to_bytes(const float* src, std::size_t n) {
  std::vector<std::byte> out(n * sizeof(float));
  std::memcpy(out.data(), src, out.size());
  return out;
}

// Converts one stored tensor to f32 (merged outputs may have been cast).
void to_floats(const Tensor& t, float* dst, const std::string& where) {
  const std::size_t n = t.info.numel();
  const std::byte* s = t.data.data();
  switch (t.info.dtype) {
    case DType::f32: std::memcpy(dst, s, n * 4); break;
    case DType::f64:
      for (std::size_t i = 0; i < n; ++i) {
        double d;
        std::memcpy(&d, s + 8 * i, 8);
        dst[i] = float(d);
      }
      break;
    case DType::f16:
    case DType::bf16:
      for (std::size_t i = 0; i < n; ++i) {
        std::uint16_t h;
        std::memcpy(&h, s + 2 * i, 2);
        dst[i] = t.info.dtype == DType::f16 ? f16_to_f32(h) : bf16_to_f32(h);
      }
      break;
    default: throw Error(where + ": tensor '" + t.info.name + "' is not a float tensor");
  }
}

std::string get_extra(const CheckpointMeta& m, const std::string& key, const std::string& where) {
  auto it = m.extra.find(key);
  if (it == m.extra.end()) throw Error(where + ": metadata has no '" + key + "'");
  return it->second;
}

// The file's tensors by name, checked against what `cfg` describes before anything of the model's
// size exists: the config comes from metadata (for the daemon's outputs, a peer's Hello), so it
// alone must never size an allocation. Each model tensor must be present with its exact shape,
// which bounds the model by the tensors the file really holds.
std::map<std::string, const Tensor*> check_config_against_tensors(const GptConfig& cfg, const Checkpoint& ck,
                                                                 const std::string& where) {
  const std::uint64_t needed = 4 + 12 * std::uint64_t(cfg.n_layer);  // param_layout: 4 + 12 per layer
  if (needed > ck.tensors.size())
    throw Error(where + ": the model config (model.n_layer " + std::to_string(cfg.n_layer) + ") needs " +
                std::to_string(needed) + " tensors; the file holds " + std::to_string(ck.tensors.size()));
  std::map<std::string, const Tensor*> by_name;
  for (const auto& t : ck.tensors) by_name[t.info.name] = &t;
  for (const auto& s : param_layout(cfg)) {
    auto it = by_name.find(s.name);
    if (it == by_name.end()) throw Error(where + ": missing model tensor '" + s.name + "'");
    if (it->second->info.shape != s.shape)
      throw Error(where + ": tensor '" + s.name + "' has the wrong shape for the model config (model.n_embd " +
                  std::to_string(cfg.n_embd) + ", model.vocab_size " + std::to_string(cfg.vocab_size) +
                  ", model.block_size " + std::to_string(cfg.block_size) + ")");
  }
  return by_name;
}

}  // namespace

std::vector<TensorInfo> model_tensor_infos(const GptConfig& cfg) {
  std::vector<TensorInfo> out;
  for (const auto& s : param_layout(cfg)) out.push_back({s.name, DType::f32, s.shape});
  return out;
}

void save_model(const std::filesystem::path& path, const GptConfig& cfg, const Vocab& vocab,
                const std::vector<float>& params, CheckpointMeta meta) {
  for (auto& [k, v] : config_to_meta(cfg)) meta.extra[k] = v;
  meta.extra[kVocabKey] = vocab.to_hex();
  Checkpoint ck;
  ck.meta = std::move(meta);
  for (const auto& s : param_layout(cfg))
    ck.tensors.push_back({{s.name, DType::f32, s.shape}, to_bytes(params.data() + s.offset, s.numel)});
  save_checkpoint(path, ck);
}

ModelFile load_model(const std::filesystem::path& path, const ModelFile* fallback) {
  const std::string where = path.string();
  Checkpoint ck = load_checkpoint(path);
  ModelFile m;
  m.meta = ck.meta;
  if (ck.meta.extra.contains("model.n_layer") || !fallback) {
    m.config = config_from_meta(ck.meta.extra, where);
    m.vocab = Vocab::from_hex(get_extra(ck.meta, kVocabKey, where), where);
  } else {
    m.config = fallback->config;
    m.vocab = fallback->vocab;
  }
  if (m.vocab.size() != m.config.vocab_size) throw Error(where + ": vocabulary size disagrees with model.vocab_size");
  const auto by_name = check_config_against_tensors(m.config, ck, where);
  const auto layout = param_layout(m.config);
  m.params.assign(layout.back().offset + layout.back().numel, 0.0f);
  for (const auto& s : layout) to_floats(*by_name.at(s.name), m.params.data() + s.offset, where);
  return m;
}

void save_state(const std::filesystem::path& path, const TrainState& st) {
  const auto& cfg = st.model.config;
  Checkpoint ck;
  ck.meta = st.model.meta;
  for (auto& [k, v] : config_to_meta(cfg)) ck.meta.extra[k] = v;
  ck.meta.extra[kVocabKey] = st.model.vocab.to_hex();
  ck.meta.extra["state.seed"] = std::to_string(st.seed);
  ck.meta.extra["state.step"] = std::to_string(st.step);
  ck.meta.extra["state.optim_t"] = std::to_string(st.optim.t);
  ck.meta.step = st.step;
  const bool have_optim = !st.optim.m.empty();
  for (const auto& s : param_layout(cfg)) {
    ck.tensors.push_back({{s.name, DType::f32, s.shape}, to_bytes(st.model.params.data() + s.offset, s.numel)});
    if (have_optim) {
      ck.tensors.push_back({{"optim.m." + s.name, DType::f32, s.shape}, to_bytes(st.optim.m.data() + s.offset, s.numel)});
      ck.tensors.push_back({{"optim.v." + s.name, DType::f32, s.shape}, to_bytes(st.optim.v.data() + s.offset, s.numel)});
    }
  }
  save_checkpoint(path, ck);  // the checkpoint writer commits atomically (temp name, fsync, rename)
}

TrainState load_state(const std::filesystem::path& path) {
  const std::string where = path.string();
  Checkpoint ck = load_checkpoint(path);
  TrainState st;
  st.model.meta = ck.meta;
  st.model.config = config_from_meta(ck.meta.extra, where);
  st.model.vocab = Vocab::from_hex(get_extra(ck.meta, kVocabKey, where), where);
  try {
    st.seed = std::stoull(get_extra(ck.meta, "state.seed", where));
    st.step = std::stoll(get_extra(ck.meta, "state.step", where));
    st.optim.t = std::stoll(get_extra(ck.meta, "state.optim_t", where));
  } catch (const std::invalid_argument&) {
    throw Error(where + ": malformed state.* metadata");
  }
  const auto by_name = check_config_against_tensors(st.model.config, ck, where);
  const std::size_t n = num_params(st.model.config);
  st.model.params.assign(n, 0.0f);
  const bool have_optim = st.optim.t > 0;
  if (have_optim) {
    st.optim.m.assign(n, 0.0f);
    st.optim.v.assign(n, 0.0f);
  }
  auto fill = [&](const std::string& name, const ParamSpec& s, std::vector<float>& dst) {
    auto it = by_name.find(name);
    if (it == by_name.end()) throw Error(where + ": missing tensor '" + name + "'");
    if (it->second->info.dtype != DType::f32 || it->second->info.shape != s.shape)
      throw Error(where + ": tensor '" + name + "' is not f32 of the model's shape");
    std::memcpy(dst.data() + s.offset, it->second->data.data(), s.numel * sizeof(float));
  };
  for (const auto& s : param_layout(st.model.config)) {
    fill(s.name, s, st.model.params);
    if (have_optim) {
      fill("optim.m." + s.name, s, st.optim.m);
      fill("optim.v." + s.name, s, st.optim.v);
    }
  }
  return st;
}

}  // namespace wsm::trainer
