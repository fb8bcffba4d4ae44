#include "wsm/trainer/data.h"

#include <fstream>
#include <sstream>

#include "wsm/core/error.h"
#include "trainer/rng.h"

namespace wsm::trainer {

Vocab Vocab::from_texts(const std::vector<const std::string*>& texts) {
  std::array<bool, 256> seen{};
  for (const auto* t : texts)
    for (unsigned char c : *t) seen[c] = true;
  Vocab v;
  v.id_.fill(-1);
  for (int c = 0; c < 256; ++c)
    if (seen[std::size_t(c)]) {
      v.id_[std::size_t(c)] = std::int32_t(v.bytes_.size());
      v.bytes_.push_back(static_cast<unsigned char>(c));
    }
  return v;
}

Vocab Vocab::from_hex(const std::string& hex, const std::string& source) {
  if (hex.empty() || hex.size() % 2 != 0) throw Error(source + ": vocabulary metadata is not a hex byte string");
  Vocab v;
  v.id_.fill(-1);
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    int c = std::stoi(hex.substr(i, 2), nullptr, 16);
    if (v.id_[std::size_t(c)] >= 0) throw Error(source + ": vocabulary metadata repeats a byte");
    v.id_[std::size_t(c)] = std::int32_t(v.bytes_.size());
    v.bytes_.push_back(static_cast<unsigned char>(c));
  }
  return v;
}

std::string Vocab::to_hex() const {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes_) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

std::vector<std::int32_t> Vocab::encode(const std::string& text, const std::string& source) const {
  std::vector<std::int32_t> out(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    auto id = id_[static_cast<unsigned char>(text[i])];
    if (id < 0)
      throw Error(source + ": byte 0x" + std::to_string(int(static_cast<unsigned char>(text[i]))) + " at offset " +
                  std::to_string(i) + " is not in the model's vocabulary");
    out[i] = id;
  }
  return out;
}

std::string read_text_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path.string() + ": cannot open text file");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

CorpusPaths default_corpus(const std::filesystem::path& repo_root) {
  CorpusPaths p{repo_root / "data/cache/austen/train.txt", repo_root / "data/cache/austen/val.txt"};
  if (!std::filesystem::exists(p.train) || !std::filesystem::exists(p.val))
    throw Error(p.train.string() + ": Austen corpus not cached; run `python3 " +
                (repo_root / "tools/fetch-austen.py").string() + "` once, or pass --data FILE --val FILE");
  return p;
}

Batch batch_at(const std::vector<std::int32_t>& data, std::uint64_t seed, std::int64_t step, int B, int T) {
  if (data.size() < std::size_t(T) + 2) throw Error("training data shorter than one context window");
  const std::uint64_t starts = data.size() - std::size_t(T);  // start + T (target) stays in range
  Batch batch;
  batch.tokens.resize(std::size_t(B) * T);
  batch.targets.resize(std::size_t(B) * T);
  for (int b = 0; b < B; ++b) {
    const std::size_t start = hash3(seed, std::uint64_t(step), std::uint64_t(b)) % starts;
    for (int t = 0; t < T; ++t) {
      batch.tokens[std::size_t(b) * T + t] = data[start + t];
      batch.targets[std::size_t(b) * T + t] = data[start + t + 1];
    }
  }
  return batch;
}

ValWindows val_windows(std::size_t data_size, int T, std::int64_t max_positions) {
  ValWindows w{T, 0};
  if (data_size < std::size_t(T) + 1) throw Error("validation data shorter than one context window");
  const std::int64_t fit = std::int64_t((data_size - 1) / std::size_t(T));
  w.windows = std::min<std::int64_t>(fit, std::max<std::int64_t>(1, max_positions / T));
  return w;
}

Batch val_batch(const std::vector<std::int32_t>& data, const ValWindows& w, std::int64_t first, int count) {
  Batch batch;
  batch.tokens.resize(std::size_t(count) * w.T);
  batch.targets.resize(std::size_t(count) * w.T);
  for (int b = 0; b < count; ++b) {
    const std::size_t start = std::size_t(first + b) * std::size_t(w.T);
    for (int t = 0; t < w.T; ++t) {
      batch.tokens[std::size_t(b) * w.T + t] = data[start + t];
      batch.targets[std::size_t(b) * w.T + t] = data[start + t + 1];
    }
  }
  return batch;
}

}  // namespace wsm::trainer
