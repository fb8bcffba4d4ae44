#pragma once
// Test support: a text with structure (so training moves) that is not the Austen cache, so trainer
// and compare tests stay hermetic.
#include <cstdint>
#include <string>

namespace wsm::test {

inline std::string synthetic_text(std::size_t n) {
  const char* words[] = {"the ", "cat ", "sat ", "on ", "a ", "mat. ", "Emma ", "walked ", "home.\n"};
  std::string s;
  std::uint64_t x = 12345;
  while (s.size() < n) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    s += words[(x >> 33) % 9];
  }
  return s;
}

}  // namespace wsm::test
