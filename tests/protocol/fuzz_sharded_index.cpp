// libFuzzer target for sharded safetensors sets (wsm/formats/sharded_checkpoint.h): the input is the
// model.safetensors.index.json of a directory that also holds two small valid shards, a.safetensors
// and b.safetensors (written once, in tmpfs: fuzz_scratch.h); the set is opened and read in full. Success or a wsm::Error are the only
// allowed outcomes; whatever opens must read back the shards' own bytes.
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "wsm/formats/checkpoint.h"
#include "wsm/formats/sharded_checkpoint.h"
#include "tests/protocol/fuzz_scratch.h"

namespace {

namespace fs = std::filesystem;

// The shards: a holds "x" (f32[2]) and "y" (u8[3]), b holds "z" (i16[1]).
fs::path make_dir() {
  const fs::path dir = wsm::fuzz::scratch_dir() / "sharded";
  fs::create_directories(dir);
  spdlog::set_level(spdlog::level::off);  // warnings about unlisted tensors: one per input
  wsm::Checkpoint a, b;
  a.tensors.push_back({{"x", wsm::DType::f32, {2}}, std::vector<std::byte>(8, std::byte{1})});
  a.tensors.push_back({{"y", wsm::DType::u8, {3}}, std::vector<std::byte>(3, std::byte{2})});
  b.tensors.push_back({{"z", wsm::DType::i16, {1}}, std::vector<std::byte>(2, std::byte{3})});
  wsm::save_checkpoint(dir / "a.safetensors", a);
  wsm::save_checkpoint(dir / "b.safetensors", b);
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const fs::path dir = make_dir();
  std::ofstream(dir / wsm::kShardIndexName, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  try {
    auto r = wsm::open_checkpoint(dir / wsm::kShardIndexName);
    for (const auto& t : r->tensors()) {
      std::vector<std::byte> buf(t.nbytes());
      r->read(t.name, 0, buf);
      const std::byte want = t.name == "x" ? std::byte{1} : t.name == "y" ? std::byte{2} : std::byte{3};
      for (auto v : buf)
        if (v != want) std::abort();
    }
  } catch (const wsm::Error&) {
  }
  return 0;
}
