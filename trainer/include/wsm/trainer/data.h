#pragma once
// Text data for the trainer: a byte-level vocabulary restricted to the bytes that occur in the corpus
// (81 for Austen's text, vs 256), training batches that are a pure function of (seed, step), and
// fixed validation windows shared by every model that is evaluated.
#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace wsm::trainer {

class Vocab {
 public:
  Vocab() = default;
  // Every distinct byte of the given texts, in byte order.
  static Vocab from_texts(const std::vector<const std::string*>& texts);
  // The hex form stored in checkpoint metadata ("0a2021..."), and back.
  static Vocab from_hex(const std::string& hex, const std::string& source);
  std::string to_hex() const;

  int size() const { return int(bytes_.size()); }
  // Token ids of a text; throws wsm::Error naming `source` on a byte outside the vocabulary.
  std::vector<std::int32_t> encode(const std::string& text, const std::string& source) const;
  unsigned char byte(std::int32_t id) const { return bytes_.at(std::size_t(id)); }
  bool operator==(const Vocab& o) const { return bytes_ == o.bytes_; }

 private:
  std::vector<unsigned char> bytes_;
  std::array<std::int32_t, 256> id_{};
};

std::string read_text_file(const std::filesystem::path& path);

// Default corpus: <repo>/data/cache/austen/{train,val}.txt. Throws wsm::Error telling the user the
// one command that creates it (tools/fetch-austen.py) when it is missing.
struct CorpusPaths {
  std::filesystem::path train, val;
};
CorpusPaths default_corpus(const std::filesystem::path& repo_root);

struct Batch {
  std::vector<std::int32_t> tokens, targets;  // [B, T] each; targets are tokens shifted by one
};

// Sequence b of step `step` starts at a position drawn from hash(seed, step, b): any step's batch
// can be rebuilt without replaying the ones before it (resume, branching runs).
Batch batch_at(const std::vector<std::int32_t>& data, std::uint64_t seed, std::int64_t step, int B, int T);

// Validation: consecutive non-overlapping windows of T tokens from the start of the data, every
// position scored, until max_positions (rounded down to whole windows) or the data run out.
struct ValWindows {
  int T = 0;
  std::int64_t windows = 0;
  std::int64_t positions() const { return windows * T; }
};
ValWindows val_windows(std::size_t data_size, int T, std::int64_t max_positions);
Batch val_batch(const std::vector<std::int32_t>& data, const ValWindows& w, std::int64_t first, int count);

}  // namespace wsm::trainer
