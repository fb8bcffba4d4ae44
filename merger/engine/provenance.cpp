#include "wsm/merger/provenance.h"

#include <nlohmann/json.hpp>

#include "wsm/core/error.h"

namespace wsm::merger {
namespace {
using nlohmann::json;

constexpr const char* kKey = "wsm.provenance";

json optional_int(const std::optional<std::int64_t>& v) { return v ? json(*v) : json(nullptr); }
std::optional<std::int64_t> read_optional_int(const json& j) {
  return j.is_null() ? std::nullopt : std::optional<std::int64_t>(j.get<std::int64_t>());
}
}  // namespace

std::map<std::string, std::string> provenance_metadata(const Provenance& p) {
  json sources = json::array();
  for (const auto& s : p.sources)
    sources.push_back({{"path", s.path}, {"step", optional_int(s.step)}, {"tokens", optional_int(s.tokens)},
                       {"weight", s.weight}});
  const json record = {{"tool", p.tool},
                       {"version", p.version},
                       {"run_id", p.run_id},
                       {"spec", p.spec},
                       {"shape", p.shape},
                       {"floor", p.floor},
                       {"sampling_rule", p.sampling_rule},
                       {"window", optional_int(p.window)},
                       {"axis", p.axis},
                       {"sources", sources},
                       {"dtype", p.dtype},
                       {"accumulate", p.accumulate},
                       {"method", p.method},
                       {"copied_from_newest", p.copied_from_newest}};
  return {{kKey, record.dump()}, {"wsm.version", p.version}};
}

std::optional<Provenance> provenance_from_metadata(const std::map<std::string, std::string>& extra) {
  const auto it = extra.find(kKey);
  if (it == extra.end()) return std::nullopt;
  try {
    const json j = json::parse(it->second);
    Provenance p;
    p.tool = j.at("tool").get<std::string>();
    p.version = j.at("version").get<std::string>();
    p.run_id = j.at("run_id").get<std::string>();
    p.spec = j.at("spec").get<std::string>();
    p.shape = j.at("shape").get<std::string>();
    p.floor = j.at("floor").get<double>();
    p.sampling_rule = j.at("sampling_rule").get<std::string>();
    p.window = read_optional_int(j.at("window"));
    p.axis = j.at("axis").get<std::string>();
    for (const auto& s : j.at("sources"))
      p.sources.push_back({s.at("path").get<std::string>(), read_optional_int(s.at("step")),
                           read_optional_int(s.at("tokens")), s.at("weight").get<double>()});
    p.dtype = j.at("dtype").get<std::string>();
    p.accumulate = j.at("accumulate").get<std::string>();
    p.method = j.at("method").get<std::string>();
    p.copied_from_newest = j.at("copied_from_newest").get<std::vector<std::string>>();
    return p;
  } catch (const json::exception& e) {
    throw Error(std::string("malformed ") + kKey + " metadata: " + e.what());
  }
}

}  // namespace wsm::merger
