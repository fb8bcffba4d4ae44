#pragma once
// Counter-based randomness: every random number is a pure function of (seed, stream, index), so
// batches and initial weights are reproducible, resumable and identical on every platform.
#include <cmath>
#include <cstdint>

namespace wsm::trainer {

inline std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

inline std::uint64_t hash3(std::uint64_t a, std::uint64_t b, std::uint64_t c) {
  return splitmix64(splitmix64(splitmix64(a) ^ b) ^ c);
}

// Uniform in (0, 1): 53 random bits, never exactly 0.
inline double uniform01(std::uint64_t bits) { return (double(bits >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

// Standard normal via Box-Muller on two independent hashes.
inline double normal(std::uint64_t seed, std::uint64_t stream, std::uint64_t index) {
  double u1 = uniform01(hash3(seed, stream, 2 * index));
  double u2 = uniform01(hash3(seed, stream, 2 * index + 1));
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

}  // namespace wsm::trainer
