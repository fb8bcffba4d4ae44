#include "protocol/formats/hdf5_helper.h"

#include <algorithm>
#include <atomic>
#include <mutex>

#include <nlohmann/json.hpp>

#include "protocol/formats/hdf5_inspector.h"
#include "protocol/formats/hdf5_library.h"
#include "wsm/core/error.h"
#include "wsm/core/printable.h"
#include "wsm/formats/hdf5_checkpoint.h"

namespace fs = std::filesystem;

namespace wsm {
namespace hdf5 {

namespace {
std::atomic<std::int64_t> g_helper_timeout_cap_ms{0};  // 0: no cap (set_hdf5_helper_timeout sets one)
}  // namespace

std::chrono::milliseconds helper_timeout(std::uint64_t work_bytes) {
  constexpr std::uint64_t kBaseMs = 10'000, kBytesPerMs = 5'000, kMaxMs = 600'000;  // 10 s + 1 s per 5 MB, <= 10 min
  const auto scaled = static_cast<std::int64_t>(std::min(kMaxMs, kBaseMs + work_bytes / kBytesPerMs));
  const std::int64_t cap = g_helper_timeout_cap_ms.load();
  return std::chrono::milliseconds(cap > 0 ? std::min(cap, scaled) : scaled);
}

Hdf5Helper::Hdf5Helper()
    : worker_(hdf5_serve(), [](const std::function<void()>& fork) {
        const Lock lock(hdf5_lock());  // forked while no thread of ours is inside libhdf5
        fork();
      }) {}

std::shared_ptr<Hdf5Helper> shared_hdf5_helper() {
  static std::mutex mutex;
  static std::weak_ptr<Hdf5Helper> current;
  const std::lock_guard lock(mutex);
  auto helper = current.lock();
  if (!helper) {
    helper = std::make_shared<Hdf5Helper>();
    current = helper;
  }
  return helper;
}

// Parses the helper's manifest, trusting nothing in it: names, dtypes, shapes and offsets are
// checked as if they came from the file itself.
std::vector<Hdf5Entry> parse_manifest(const std::string& text, const std::string& where,
                                      std::map<std::string, std::string>& extra) {
  std::vector<Hdf5Entry> out;
  try {
    const auto doc = nlohmann::json::parse(text);
    extra = doc.at("meta").get<std::map<std::string, std::string>>();
    for (const auto& t : doc.at("tensors")) {
      Hdf5Entry e;
      e.info.name = t.at("name").get<std::string>();
      const auto dtype = parse_dtype(t.at("dtype").get<std::string>());
      if (!dtype) throw Error(where + ": helper named an unknown dtype");
      e.info.dtype = *dtype;
      std::uint64_t bytes = dtype_size(e.info.dtype);
      for (const auto& v : t.at("shape")) {
        const auto dim = v.get<std::uint64_t>();
        if (dim > std::uint64_t(INT64_MAX) || __builtin_mul_overflow(bytes, dim, &bytes))
          throw Error(where + ": dataset " + printable(e.info.name) + ": shape overflows 64 bits");
        e.info.shape.push_back(static_cast<std::int64_t>(dim));
      }
      if (!t.at("offset").is_null()) e.offset = t.at("offset").get<std::uint64_t>();
      out.push_back(std::move(e));
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + ": the HDF5 helper process sent a malformed manifest (" + e.what() + ")");
  }
  return out;
}

}  // namespace hdf5

void set_hdf5_helper_timeout(std::chrono::milliseconds limit) { hdf5::g_helper_timeout_cap_ms = limit.count(); }

Hdf5HelperLease hold_hdf5_helper() { return Hdf5HelperLease(hdf5::shared_hdf5_helper()); }

}  // namespace wsm
