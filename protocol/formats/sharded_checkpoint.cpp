#include "wsm/formats/sharded_checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <system_error>
#include <unordered_map>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "wsm/core/printable.h"
#include "wsm/formats/atomic_file.h"
#include "wsm/formats/free_space.h"
#include "wsm/formats/hf_directory.h"
#include "wsm/formats/safetensors_file.h"

namespace fs = std::filesystem;

namespace wsm {

namespace {

using ojson = nlohmann::ordered_json;

class ShardedReader final : public CheckpointReader {
 public:
  explicit ShardedReader(fs::path path) : path_(std::move(path)) {
    const std::string where = path_.string();
    fs::path dir, index;
    if (fs::is_directory(path_)) {
      dir = path_;
      std::vector<fs::path> indexes;
      for (const auto& e : fs::directory_iterator(dir))
        if (e.is_regular_file() && e.path().filename().string().ends_with(".safetensors.index.json"))
          indexes.push_back(e.path());
      if (indexes.size() == 1) index = indexes.front();
      else if (fs::exists(dir / kShardIndexName)) index = dir / kShardIndexName;
      else if (indexes.size() > 1)
        throw Error(where + ": several *.safetensors.index.json files; open one of them directly");
    } else {
      if (!fs::exists(path_)) throw Error(where + ": no such file or directory");
      index = path_;
      dir = path_.parent_path().empty() ? fs::path(".") : path_.parent_path();
    }

    std::map<std::string, std::string> strings;  // metadata: first shard's, then the index's on top
    std::unordered_map<std::string, std::string> weight_map;
    std::vector<std::string> shard_names;
    std::optional<std::uint64_t> total_size;
    if (!index.empty()) {
      parse_index(index, strings, weight_map, shard_names, total_size);
    } else {
      for (const auto& e : fs::directory_iterator(dir))
        if (e.is_regular_file() && e.path().extension() == ".safetensors")
          shard_names.push_back(e.path().filename().string());
      if (shard_names.empty()) throw Error(where + ": directory holds no *.safetensors shards and no index");
    }
    std::sort(shard_names.begin(), shard_names.end());

    std::uint64_t total = 0;
    for (const auto& name : shard_names) {
      const fs::path shard = dir / name;
      std::error_code ec;  // a name the index makes up may be one no file can have (too long): an error, not a throw
      const bool present = fs::exists(shard, ec);
      if (ec) throw Error(index.string() + ": shard '" + printable(name) + "': " + ec.message());
      if (!present) {
        std::string holder;
        for (const auto& [t, f] : weight_map)
          if (f == name && (holder.empty() || t < holder)) holder = t;
        throw Error(index.string() + ": shard '" + printable(name) + "' is missing (it holds tensor '" + printable(holder) +
                    "', ...)");
      }
      shards_.push_back(std::make_unique<SafetensorsReader>(shard));
      const auto& reader = *shards_.back();
      for (const auto& t : reader.tensors()) {
        if (!where_.emplace(t.name, shards_.size() - 1).second)
          throw Error(shard.string() + ": tensor '" + printable(t.name) + "' also appears in shard " +
                      shards_[where_[t.name]]->path().filename().string());
        if (!index.empty()) {
          const auto it = weight_map.find(t.name);
          if (it == weight_map.end())
            spdlog::warn("{}: tensor '{}' is not listed in {}", shard.string(), t.name, index.filename().string());
          else if (it->second != name)
            throw Error(index.string() + ": weight_map puts tensor '" + printable(t.name) + "' in " + printable(it->second) +
                        " but it is in " + name);
        }
        infos_.push_back(t);
        total += t.nbytes();
      }
    }
    for (const auto& [t, f] : weight_map)
      if (!where_.contains(t)) throw Error(index.string() + ": tensor '" + printable(t) + "' is not in its shard " + printable(f));
    if (total_size && *total_size != total)
      spdlog::warn("{}: metadata.total_size is {} but the shards hold {} bytes of tensors", index.string(),
                   *total_size, total);

    std::map<std::string, std::string> merged = shards_.empty() ? std::map<std::string, std::string>{}
                                                                 : shards_.front()->raw_metadata();
    for (const auto& [k, v] : strings) merged[k] = v;
    meta_ = meta_from_strings(merged, where);
  }

  const std::vector<TensorInfo>& tensors() const override { return infos_; }
  const CheckpointMeta& meta() const override { return meta_; }
  std::string format() const override { return "safetensors-sharded"; }
  const fs::path& path() const override { return path_; }
  void read(const std::string& name, std::uint64_t offset, std::span<std::byte> dst) override {
    const auto it = where_.find(name);
    if (it == where_.end()) throw Error(path_.string() + ": no tensor '" + name + "'");
    shards_[it->second]->read(name, offset, dst);
  }
  std::optional<std::span<const std::byte>> mapped(const std::string& name) override {
    const auto it = where_.find(name);
    if (it == where_.end()) throw Error(path_.string() + ": no tensor '" + name + "'");
    return shards_[it->second]->mapped(name);
  }

 private:
  static void parse_index(const fs::path& index, std::map<std::string, std::string>& strings,
                          std::unordered_map<std::string, std::string>& weight_map,
                          std::vector<std::string>& shard_names, std::optional<std::uint64_t>& total_size) {
    const std::string where = index.string();
    std::ifstream in(index, std::ios::binary);
    if (!in) throw Error(where + ": cannot open");
    ojson doc;
    try {
      doc = ojson::parse(in);
    } catch (const ojson::exception& e) {
      throw Error(where + ": corrupt index: " + e.what());
    }
    if (!doc.is_object() || !doc.contains("weight_map") || !doc["weight_map"].is_object())
      throw Error(where + ": index has no weight_map object");
    for (const auto& [t, f] : doc["weight_map"].items()) {
      if (!f.is_string()) throw Error(where + ": weight_map entry of tensor '" + printable(t) + "' is not a file name");
      const std::string file = f.get<std::string>();
      // A NUL would end the name early at open(): "a.safetensors\0x" must not open a.safetensors.
      if (file.empty() || file.find('/') != std::string::npos || file.find('\0') != std::string::npos ||
          file == "." || file == "..")
        throw Error(where + ": weight_map entry of tensor '" + printable(t) + "' names " + ojson(file).dump() +  // quoted: NULs show
                    ", not a file beside the index");
      weight_map[t] = file;
      if (std::find(shard_names.begin(), shard_names.end(), file) == shard_names.end()) shard_names.push_back(file);
    }
    if (doc.contains("metadata") && doc["metadata"].is_object()) {
      for (const auto& [k, v] : doc["metadata"].items()) {
        if (k == "total_size") {
          if (v.is_number_unsigned()) total_size = v.get<std::uint64_t>();
          continue;
        }
        strings[k] = v.is_string() ? v.get<std::string>() : v.dump();
      }
    }
  }

  fs::path path_;
  std::vector<std::unique_ptr<SafetensorsReader>> shards_;
  std::unordered_map<std::string, std::size_t> where_;  // tensor -> shard
  std::vector<TensorInfo> infos_;
  CheckpointMeta meta_;
};

std::string shard_file_name(std::size_t i, std::size_t n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", i + 1, n);
  return buf;
}

class ShardedWriter final : public CheckpointWriter {
 public:
  ShardedWriter(const fs::path& dir, const CheckpointMeta& meta, const std::vector<TensorInfo>& tensors,
                std::uint64_t shard_bytes, fs::path hf_template)
      : out_(dir), strings_(meta_to_strings(meta)), hf_template_(std::move(hf_template)),
        hf_model_(!hf_template_.empty() || strings_.contains(kHfConfigKey)), tensors_(tensors) {
    const auto plan = plan_shards(tensors, shard_bytes);
    fs::create_directories(out_.temp_path());
    for (std::size_t i = 0; i < plan.size(); ++i) {
      const std::string file = shard_file_name(i, plan.size());
      shards_.push_back(std::make_unique<SafetensorsFileWriter>(out_.temp_path() / file, plan[i], strings_));
      files_.push_back(file);
      for (const auto& t : plan[i]) {
        owner_[t.name] = i;
        weight_map_.emplace_back(t.name, file);
        total_ += t.nbytes();
      }
    }
  }

  void write(const std::string& name, std::uint64_t offset, std::span<const std::byte> src) override {
    const auto it = owner_.find(name);
    if (it == owner_.end()) throw Error(out_.final_path().string() + ": tensor '" + name + "' is not in the manifest");
    shards_[it->second]->write(name, offset, src);
  }

  void prepare() override {
    if (prepared_) return;
    for (auto& s : shards_) s->close();
    ojson index;
    ojson m = ojson::object();
    m["total_size"] = total_;
    for (const auto& [k, v] : strings_) m[k] = v;
    index["metadata"] = std::move(m);
    ojson wm = ojson::object();
    for (const auto& [t, f] : weight_map_) wm[t] = f;
    index["weight_map"] = std::move(wm);
    const std::string text = index.dump(2) + "\n";
    const fs::path p = out_.temp_path() / kShardIndexName;
    std::ofstream f(p, std::ios::binary);
    f.write(text.data(), static_cast<std::streamsize>(text.size()));
    f.close();
    if (!f) throw Error(p.string() + ": write failed");
    // A model directory when a template or the model's config (hf.config) says what the model is.
    if (hf_model_) write_hf_side_files(out_.temp_path(), hf_template_, strings_, tensors_);
    out_.sync();
    prepared_ = true;
  }
  void commit() override {
    prepare();
    out_.commit();
  }
  std::vector<LaidOutFile> layout() const override {
    std::vector<LaidOutFile> files;
    for (std::size_t i = 0; i < shards_.size(); ++i) {
      LaidOutFile f{out_.temp_path() / files_[i], {}};
      for (const auto& [name, at] : shards_[i]->data_offsets()) f.offsets.emplace(name, at);
      files.push_back(std::move(f));
    }
    return files;
  }

 private:
  AtomicFile out_;
  std::map<std::string, std::string> strings_;
  fs::path hf_template_;
  bool hf_model_ = false;
  std::vector<TensorInfo> tensors_;
  std::vector<std::string> files_;  // shard file names
  std::vector<std::unique_ptr<SafetensorsFileWriter>> shards_;
  std::unordered_map<std::string, std::size_t> owner_;
  std::vector<std::pair<std::string, std::string>> weight_map_;
  std::uint64_t total_ = 0;
  bool prepared_ = false;
};

}  // namespace

std::vector<std::vector<TensorInfo>> plan_shards(const std::vector<TensorInfo>& tensors, std::uint64_t shard_bytes) {
  std::vector<std::vector<TensorInfo>> plan;
  std::uint64_t used = 0;
  for (const auto& t : tensors) {
    const std::uint64_t b = t.nbytes();
    if (plan.empty() || (shard_bytes > 0 && used > 0 && used + b > shard_bytes)) {
      plan.emplace_back();
      used = 0;
    }
    plan.back().push_back(t);
    used += b;
  }
  return plan;
}

std::unique_ptr<CheckpointReader> open_sharded(const fs::path& path) { return std::make_unique<ShardedReader>(path); }

std::unique_ptr<CheckpointWriter> create_sharded(const fs::path& dir, const CheckpointMeta& meta,
                                                 const std::vector<TensorInfo>& tensors, std::uint64_t shard_bytes,
                                                 const fs::path& hf_template) {
  if (!hf_template.empty()) check_hf_template(hf_template);  // before anything is created
  require_free_space(dir, payload_bytes(tensors));
  return std::make_unique<ShardedWriter>(dir, meta, tensors, shard_bytes, hf_template);
}

}  // namespace wsm
