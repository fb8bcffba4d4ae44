// libFuzzer target for the safetensors header parser: any byte string must either parse into a
// header that obeys the format's rules, or throw wsm::Error. Crashes, hangs, sanitizer reports
// and any other exception are bugs. Built by fuzz.cmake with clang++ -fsanitize=fuzzer.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "wsm/formats/safetensors_header.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> file(reinterpret_cast<const std::byte*>(data), size);
  try {
    const wsm::SafetensorsHeader h = wsm::parse_safetensors_file(file, "fuzz-input");
    // What the parser accepted must be self-consistent: in-bounds, back to back.
    std::uint64_t end = 0;
    for (const auto& e : h.tensors) {
      if (e.begin != end || e.end < e.begin || h.data_start + e.end > size) std::abort();
      end = e.end;
    }
    if (h.data_start + end != size) std::abort();
    (void)wsm::meta_from_strings(h.metadata, "fuzz-input");
  } catch (const wsm::Error&) {
  }
  return 0;
}
