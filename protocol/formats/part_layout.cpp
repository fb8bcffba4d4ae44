#include "wsm/formats/part_layout.h"

#include <cstdio>

#include <nlohmann/json.hpp>

#include "wsm/core/error.h"

namespace wsm {

std::string layout_to_json(const PartLayout& l) {
  nlohmann::json entries = nlohmann::json::array();
  for (const auto& e : l.entries)
    entries.push_back({{"entry", e.entry},
                       {"name", e.name},
                       {"global_shape", e.slice.global_shape},
                       {"offsets", e.slice.offsets},
                       {"lengths", e.slice.lengths},
                       {"replicated", e.slice.replicated}});
  return nlohmann::json{{"version", kPartLayoutVersion},
                        {"run_id", l.run_id},
                        {"world_size", l.world_size},
                        {"local_world_size", l.local_world_size},
                        {"ranks", l.ranks},
                        {"entries", entries}}
      .dump();
}

PartLayout layout_from_json(const std::string& text, const std::string& where) {
  try {
    const auto j = nlohmann::json::parse(text);
    if (j.at("version").get<int>() != kPartLayoutVersion)
      throw Error("part layout version " + j.at("version").dump() + " is not " + std::to_string(kPartLayoutVersion));
    PartLayout l;
    l.run_id = j.at("run_id").get<std::string>();
    l.world_size = j.at("world_size").get<int>();
    l.local_world_size = j.at("local_world_size").get<int>();
    l.ranks = j.at("ranks").get<std::vector<int>>();
    for (const auto& e : j.at("entries")) {
      PartEntry p;
      p.entry = e.at("entry").get<std::string>();
      p.name = e.at("name").get<std::string>();
      p.slice.global_shape = e.at("global_shape").get<std::vector<std::int64_t>>();
      p.slice.offsets = e.at("offsets").get<std::vector<std::int64_t>>();
      p.slice.lengths = e.at("lengths").get<std::vector<std::int64_t>>();
      p.slice.replicated = e.at("replicated").get<bool>();
      if (auto problem = slice_problem(p.slice)) throw Error("tensor '" + p.name + "': " + *problem);
      if (p.entry != slice_entry_name(p.name, p.slice))
        throw Error("entry '" + p.entry + "' does not name tensor '" + p.name + "' at its slice");
      l.entries.push_back(std::move(p));
    }
    if (l.world_size < 1 || l.ranks.empty()) throw Error("no ranks, or a world size below 1");
    for (std::size_t i = 0; i < l.ranks.size(); ++i)
      if (l.ranks[i] < 0 || l.ranks[i] >= l.world_size || (i && l.ranks[i] <= l.ranks[i - 1]))
        throw Error("ranks must be ascending and below the world size " + std::to_string(l.world_size));
    return l;
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + ": bad " + kPartLayoutKey + " metadata: " + e.what());
  } catch (const Error& e) {
    throw Error(where + ": bad " + kPartLayoutKey + " metadata: " + e.what());
  }
}

std::string part_file_name(const PartLayout& layout) {
  char name[64];
  std::snprintf(name, sizeof name, "part-rank%05d.h5", layout.ranks.empty() ? 0 : layout.ranks.front());
  return name;
}

}  // namespace wsm
