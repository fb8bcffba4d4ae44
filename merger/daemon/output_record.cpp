#include "merger/daemon/output_record.h"

#include "wsm/core/error.h"

namespace wsm::merger {
namespace {

// Moves rest[key] into `field` when it converts and writes back exactly as read.
template <class T>
bool take(nlohmann::json& rest, const char* key, T& field) {
  const auto it = rest.find(key);
  if (it == rest.end()) return false;
  try {
    T value = it->template get<T>();
    if (nlohmann::json(value).dump() != it->dump()) return false;
    field = std::move(value);
  } catch (const nlohmann::json::exception&) {
    return false;
  }
  rest.erase(it);
  return true;
}

template <class T>
void take(nlohmann::json& rest, const char* key, std::optional<T>& field) {
  T value{};
  if (take(rest, key, value)) field = std::move(value);
}

// A sharded part: "part", "world_size" and "ranks" together, or none of them taken.
std::optional<OutputRecord::Part> take_part(nlohmann::json& rest) {
  nlohmann::json probe = rest;
  OutputRecord::Part p;
  if (!take(probe, "part", p.file) || !take(probe, "world_size", p.world_size) || !take(probe, "ranks", p.ranks))
    return std::nullopt;
  rest = std::move(probe);
  return p;
}

std::optional<OutputRecord::RunningSum> take_running_sum(nlohmann::json& rest) {
  const auto it = rest.find("running_sum");
  if (it == rest.end() || !it->is_object()) return std::nullopt;
  nlohmann::json probe = *it;
  OutputRecord::RunningSum s;
  if (!take(probe, "recomputed", s.recomputed) || !take(probe, "updates_since_recompute", s.updates_since_recompute) ||
      !take(probe, "read", s.read) || !probe.empty())
    return std::nullopt;
  rest.erase(it);
  return s;
}

}  // namespace

void to_json(nlohmann::json& j, const OutputRecord& r) {
  j = r.unknown.is_object() ? r.unknown : nlohmann::json::object();
  // A key every record has, kept as read when its value was not of the type this version writes.
  auto put = [&](const char* key, const auto& value) {
    if (!j.contains(key)) j[key] = value;
  };
  put("run_id", r.run_id);
  put("label", r.label);
  put("spec", r.spec);
  put("window", r.window);
  put("axis", r.axis);
  put("step", r.step);
  put("tokens", r.tokens);
  put("path", r.path);
  put("sources", r.sources);
  put("source_tokens", r.source_tokens);
  put("weights", r.weights);
  put("sampling", r.sampling);
  if (r.dtype) j["dtype"] = *r.dtype;
  if (r.method) j["method"] = *r.method;
  if (r.request_id) j["request_id"] = *r.request_id;
  if (r.recovered) j["recovered"] = *r.recovered;
  if (r.file) j["file"] = *r.file;
  if (r.part) {
    j["part"] = r.part->file;
    j["world_size"] = r.part->world_size;
    j["ranks"] = r.part->ranks;
  }
  if (r.running_sum)
    j["running_sum"] = {{"recomputed", r.running_sum->recomputed},
                        {"updates_since_recompute", r.running_sum->updates_since_recompute},
                        {"read", r.running_sum->read}};
  if (r.eval) j["eval"] = *r.eval;
}

void from_json(const nlohmann::json& j, OutputRecord& r) {
  if (!j.is_object()) throw Error("output record: not a JSON object: " + j.dump().substr(0, 200));
  nlohmann::json rest = j;
  r = OutputRecord{};
  take(rest, "run_id", r.run_id);
  take(rest, "label", r.label);
  take(rest, "spec", r.spec);
  take(rest, "window", r.window);
  take(rest, "axis", r.axis);
  take(rest, "step", r.step);
  take(rest, "tokens", r.tokens);
  take(rest, "path", r.path);
  take(rest, "sources", r.sources);
  take(rest, "source_tokens", r.source_tokens);
  take(rest, "weights", r.weights);
  take(rest, "sampling", r.sampling);
  take(rest, "dtype", r.dtype);
  take(rest, "method", r.method);
  take(rest, "request_id", r.request_id);
  take(rest, "recovered", r.recovered);
  take(rest, "file", r.file);
  r.part = take_part(rest);
  r.running_sum = take_running_sum(rest);
  if (auto it = rest.find("eval"); it != rest.end()) {
    r.eval = *it;
    rest.erase(it);
  }
  r.unknown = std::move(rest);
}

}  // namespace wsm::merger
