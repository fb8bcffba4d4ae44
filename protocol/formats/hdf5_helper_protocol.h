#pragma once
// What wsm's process and its HDF5 helper process say to each other across a ChildWorker
// (child_worker.h): the request layout, and the bounds on what one request may ask for.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace wsm::hdf5 {

constexpr std::uint64_t kMaxReadBytes = 16u << 20;       // per request to the helper
constexpr std::uint64_t kMaxManifestBytes = 256u << 20;  // the manifest of ~1M tensors

// Requests to the helper process, one layout for all: kind, u64 id, i, e0, e1, then the path.
//   'O' opens `path` as file `id` and answers its manifest;
//   'R' answers elements [e0, e1) of dataset i of file `id` (opening `path` as `id` first when this
//       helper does not hold it: a fresh helper, after the last one died on another file);
//   'C' forgets file `id`.
struct HelperRequest {
  char kind = 0;
  std::array<std::uint64_t, 4> v{};  // id, i, e0, e1
  std::string path;
};

std::string encode(const HelperRequest& r);
HelperRequest decode(std::string_view req);  // throws wsm::Error on a malformed request

}  // namespace wsm::hdf5
