#include "tools/compare/results.h"

#include <fmt/format.h>

#include "wsm/core/error.h"

namespace wsm::tools::compare {

std::string_view method_name(Method m) {
  switch (m) {
    case Method::raw: return "raw";
    case Method::wsd: return "wsd";
    case Method::wsm: return "wsm";
    case Method::baseline: return "baseline";
  }
  return "?";
}

namespace {
Method parse_method(const std::string& s) {
  for (Method m : {Method::raw, Method::wsd, Method::wsm, Method::baseline})
    if (method_name(m) == s) return m;
  throw Error("results.json: unknown method '" + s + "'");
}

template <class T>
std::string join(const std::vector<T>& values, const char* format) {
  std::string out;
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i) out += ';';
    out += fmt::format(fmt::runtime(format), values[i]);
  }
  return out;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}
}  // namespace

nlohmann::json to_json(const ScoredModel& m) {
  using nlohmann::json;
  json j = {{"method", method_name(m.method)},
            {"shape", m.shape.empty() ? json(nullptr) : json(m.shape)},
            {"floor", m.floor},
            {"window", m.window},
            {"seed", m.seed ? json(*m.seed) : json(nullptr)},
            {"step", m.step ? json(*m.step) : json(nullptr)},
            {"final", m.final},
            {"path", m.path.string()},
            {"score", m.score ? json(*m.score) : json(nullptr)}};
  if (m.method == Method::baseline) j["name"] = m.name;
  if (m.noise) j["noise"] = *m.noise;
  if (m.method == Method::wsm) j["sources"] = m.sources, j["weights"] = m.weights;
  if (m.interval) j["interval"] = m.interval;
  if (!m.error.empty()) j["error"] = m.error;
  return j;
}

ScoredModel scored_model_from_json(const nlohmann::json& j) {
  ScoredModel m;
  m.method = parse_method(j.at("method").get<std::string>());
  if (!j.at("shape").is_null()) m.shape = j.at("shape").get<std::string>();
  m.floor = j.value("floor", 0.0);
  m.window = j.at("window").get<std::int64_t>();
  if (!j.at("seed").is_null()) m.seed = j.at("seed").get<std::uint64_t>();
  if (!j.at("step").is_null()) m.step = j.at("step").get<std::int64_t>();
  m.final = j.value("final", true);
  m.path = j.at("path").get<std::string>();
  if (!j.at("score").is_null()) m.score = j.at("score").get<double>();
  if (j.contains("noise") && j.at("noise").is_number()) m.noise = j.at("noise").get<double>();
  m.name = j.value("name", std::string());
  if (j.contains("sources")) m.sources = j.at("sources").get<std::vector<std::int64_t>>();
  if (j.contains("weights")) m.weights = j.at("weights").get<std::vector<double>>();
  m.interval = j.value("interval", std::int64_t(0));
  m.error = j.value("error", std::string());
  return m;
}

std::string results_csv(const std::vector<ScoredModel>& rows) {
  std::string out = "method,name,shape,floor,window,interval,seed,step,final,score,noise,sources,weights,path,error\n";
  // "{}" is fmt's shortest round-trip form: the value exactly, without float noise.
  auto number = [](const std::optional<double>& v) { return v ? fmt::format("{}", *v) : std::string(); };
  for (const auto& m : rows)
    out += fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n", method_name(m.method), csv_field(m.name), m.shape,
                       m.floor, m.window, m.interval ? std::to_string(m.interval) : "", m.seed ? std::to_string(*m.seed) : "",
                       m.step ? std::to_string(*m.step) : "", m.final ? 1 : 0, number(m.score), number(m.noise),
                       join(m.sources, "{}"), join(m.weights, "{}"), csv_field(m.path.string()), csv_field(m.error));
  return out;
}

}  // namespace wsm::tools::compare
