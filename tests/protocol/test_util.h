#pragma once
// Shared helpers for the protocol tests: a scratch directory and deterministic random tensors.
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "wsm/formats/checkpoint.h"

namespace wsm::test {

// A fresh directory under the build tree's temp area, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    static int n = 0;
    path_ = std::filesystem::temp_directory_path() /
            ("wsm-proto-" + std::to_string(::getpid()) + "-" + std::to_string(n++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// Random bit patterns (every byte value, NaN payloads included) except bool, which is 0/1.
inline Tensor random_tensor(const std::string& name, DType dtype, std::vector<std::int64_t> shape, std::uint32_t seed) {
  Tensor t;
  t.info = {name, dtype, std::move(shape)};
  t.data.resize(t.info.nbytes());
  std::mt19937 rng(seed);
  for (auto& b : t.data) b = std::byte(rng() & (dtype == DType::boolean ? 1u : 0xffu));
  return t;
}

inline std::vector<DType> all_dtypes() {
  return {DType::f32, DType::f16, DType::bf16, DType::f64, DType::i8,  DType::i16,    DType::i32,
          DType::i64, DType::u8,  DType::u16,  DType::u32, DType::u64, DType::boolean};
}

// One tensor of each dtype with assorted shapes: scalar, empty, 1-D, 3-D.
inline Checkpoint sample_checkpoint(std::uint32_t seed) {
  Checkpoint c;
  c.meta.step = 12000;
  c.meta.tokens = 6291456000LL;
  c.meta.lr = 3e-4;
  c.meta.run_id = "run-\xc3\xa9t\xc3\xa9";  // UTF-8
  c.meta.extra = {{"schedule", "1-sqrt"}, {"source.steps", "[1,2,3]"}, {"a/b", "slash key"}};
  const std::vector<std::vector<std::int64_t>> shapes = {{3, 5, 7}, {}, {0, 4}, {17}, {2, 3}};
  int i = 0;
  for (DType d : all_dtypes()) {
    c.tensors.push_back(random_tensor("model.layers." + std::to_string(i) + ".w/" + std::string(dtype_name(d)), d,
                                      shapes[i % shapes.size()], seed + i));
    ++i;
  }
  return c;
}

}  // namespace wsm::test
