#include "wsm/formats/hf_directory.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string_view>
#include <system_error>

#include <fstream>
#include <map>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "wsm/formats/atomic_file.h"

#include "wsm/core/error.h"

namespace fs = std::filesystem;

namespace wsm {
namespace {

// Files transformers reads besides the weights (AutoConfig, GenerationConfig, AutoTokenizer,
// AutoProcessor). Listed, not "everything but weights", so optimizer.pt or a stray 10 GB file
// never rides along.
constexpr std::array<std::string_view, 16> kSideFileNames = {
    "config.json",           "generation_config.json", "tokenizer.json",        "tokenizer_config.json",
    "special_tokens_map.json", "added_tokens.json",    "tokenizer.model",       "spiece.model",
    "sentencepiece.bpe.model", "vocab.json",           "vocab.txt",             "merges.txt",
    "chat_template.jinja",   "chat_template.json",     "preprocessor_config.json", "processor_config.json"};

bool is_side_file(const std::string& name) {
  if (std::find(kSideFileNames.begin(), kSideFileNames.end(), name) != kSideFileNames.end()) return true;
  // trust_remote_code models ship their classes beside the weights.
  return name.ends_with(".py") && (name.starts_with("configuration_") || name.starts_with("modeling_") ||
                                   name.starts_with("tokenization_") || name.starts_with("processing_"));
}

struct SideFile {
  std::string name;
  fs::path source;  // where its bytes are: the file itself, or where its symbolic link leads
};

bool inside(const fs::path& path, const fs::path& root) {
  const auto [r, p] = std::mismatch(root.begin(), root.end(), path.begin(), path.end());
  return r == root.end();
}

// A template's side file, its symbolic links followed here once, at start: a loop or a dangling
// link is refused, and so is a target outside the template (a link to /etc/passwd would be copied
// into every output), except inside the template's Hugging Face hub repository: the hub cache
// lays a model out as <repo>/snapshots/<revision>/<file> -> ../../blobs/<hash>.
std::optional<SideFile> resolve_side_file(const fs::path& root, const fs::directory_entry& e) {
  const std::string name = e.path().filename().string();
  if (!is_side_file(name)) return std::nullopt;
  std::error_code ec;
  if (!e.is_symlink(ec)) return e.is_regular_file(ec) ? std::optional<SideFile>({name, e.path()}) : std::nullopt;
  const fs::path target = fs::canonical(e.path(), ec);
  if (ec)
    throw Error(e.path().string() + ": a symbolic link that cannot be followed (" + ec.message() +
                "); fix or remove it from the template");
  const fs::path repo = root.parent_path().filename() == "snapshots" ? root.parent_path().parent_path() : root;
  if (!inside(target, root) && !inside(target, repo))
    throw Error(e.path().string() + ": a symbolic link to " + target.string() + ", outside the template " +
                root.string() + "; copy the file into the template to use it");
  if (!fs::is_regular_file(target, ec)) return std::nullopt;
  return SideFile{name, target};
}

std::vector<SideFile> resolved_side_files(const fs::path& dir) {
  std::error_code ec;
  const fs::path root = fs::canonical(dir, ec);
  if (ec) throw Error(dir.string() + ": cannot resolve the template directory: " + ec.message());
  std::vector<fs::directory_entry> entries(fs::directory_iterator(dir), fs::directory_iterator{});
  std::sort(entries.begin(), entries.end());  // by name: the same link is named first every time
  std::vector<SideFile> files;
  for (const auto& e : entries)
    if (auto f = resolve_side_file(root, e)) files.push_back(std::move(*f));
  return files;
}

// Copies `from` to `to` keeping its holes (a sparse file stays sparse): only the data extents
// SEEK_DATA/SEEK_HOLE report are written, then the size is set. Where the file system cannot say,
// the whole file is data.
void copy_keeping_holes(const fs::path& from, const fs::path& to) {
  struct Fds {
    int in = -1, out = -1;
    ~Fds() {
      if (in >= 0) ::close(in);
      if (out >= 0) ::close(out);
    }
  } f;
  auto fail = [&](const char* what) { return Error(from.string() + ": cannot copy into the model directory (" + what + "): " + std::strerror(errno)); };
  struct stat st {};
  if ((f.in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC)) < 0 || ::fstat(f.in, &st) != 0) throw fail("open");
  if ((f.out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, st.st_mode & 0777)) < 0) throw fail("create");
  std::vector<char> buf(1 << 20);
  for (off_t pos = 0; pos < st.st_size;) {
    off_t data = ::lseek(f.in, pos, SEEK_DATA);
    if (data < 0 && errno == ENXIO) break;  // only a hole is left
    if (data < 0) data = pos;
    off_t hole = ::lseek(f.in, data, SEEK_HOLE);
    if (hole < 0) hole = st.st_size;
    for (off_t at = data; at < hole;) {
      const ssize_t n = ::pread(f.in, buf.data(), std::size_t(std::min<off_t>(off_t(buf.size()), hole - at)), at);
      if (n <= 0) throw fail("read");
      for (ssize_t done = 0; done < n;) {
        const ssize_t w = ::pwrite(f.out, buf.data() + done, std::size_t(n - done), at + done);
        if (w <= 0) throw fail("write");
        done += w;
      }
      at += n;
    }
    pos = hole;
  }
  if (::ftruncate(f.out, st.st_size) != 0) throw fail("set size");
}

}  // namespace

bool is_hf_model_dir(const fs::path& dir) {
  std::error_code ec;
  return fs::is_directory(dir, ec) && fs::is_regular_file(dir / "config.json", ec);
}

std::vector<std::string> hf_side_files(const fs::path& dir) {
  std::vector<std::string> names;
  for (auto& f : resolved_side_files(dir)) names.push_back(std::move(f.name));
  return names;
}

void check_hf_template(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw Error(dir.string() + ": not a directory (a Hugging Face model directory was expected)");
  resolved_side_files(dir);  // every link followed and checked now, not at each output
  if (!fs::is_regular_file(dir / "config.json", ec))
    throw Error(dir.string() + ": no config.json: not a Hugging Face model directory");
}

void copy_hf_side_files(const fs::path& from, const fs::path& to) {
  check_hf_template(from);
  const auto files = resolved_side_files(from);
  for (const auto& f : files) copy_keeping_holes(f.source, to / f.name);
  std::string list;
  for (const auto& f : files) list += (list.empty() ? "" : ", ") + f.name;
  spdlog::debug("copied from {}: {}", from.string(), list);
}

std::string_view hf_dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "float32";
    case DType::bf16: return "bfloat16";
    case DType::f16: return "float16";
    case DType::f64: return "float64";
    default: return {};
  }
}

std::optional<DType> dominant_float_dtype(const std::vector<TensorInfo>& tensors) {
  std::map<DType, std::uint64_t> bytes;
  for (const auto& t : tensors)
    if (is_float(t.dtype)) bytes[t.dtype] += t.nbytes();
  if (bytes.empty()) return std::nullopt;
  return std::max_element(bytes.begin(), bytes.end(), [](const auto& a, const auto& b) { return a.second < b.second; })->first;
}

namespace {

// config.json's dtype keys set to `dtype`: "torch_dtype" (transformers 4) and "dtype" (5), key order kept.
void set_config_dtype(const fs::path& config, DType dtype) {
  const std::string where = config.string();
  std::ifstream in(config, std::ios::binary);
  auto j = nlohmann::ordered_json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object()) throw Error(where + ": not a JSON object (a Hugging Face config.json was expected)");
  const std::string name(hf_dtype_name(dtype));
  j["torch_dtype"] = name;
  j["dtype"] = name;
  write_file_atomic(config, j.dump(2) + "\n");
}

}  // namespace

bool write_hf_side_files(const fs::path& dir, const fs::path& hf_template, const std::map<std::string, std::string>& metadata,
                         const std::vector<TensorInfo>& tensors) {
  if (!hf_template.empty()) copy_hf_side_files(hf_template, dir);
  const fs::path config = dir / "config.json";
  if (!fs::exists(config)) {
    const auto sent = metadata.find(kHfConfigKey);
    if (sent == metadata.end()) return false;
    if (!nlohmann::json::accept(sent->second))
      throw Error(std::string("metadata '") + kHfConfigKey + "' is not JSON: cannot write " + config.string());
    write_file_atomic(config, sent->second);
  }
  if (const auto dtype = dominant_float_dtype(tensors)) set_config_dtype(config, *dtype);
  return true;
}

std::unique_ptr<CheckpointWriter> create_hf_directory(const fs::path& dir, const CheckpointMeta& meta,
                                                      const std::vector<TensorInfo>& tensors,
                                                      const fs::path& hf_template, std::uint64_t shard_bytes) {
  WriteOptions o;
  o.shard_bytes = shard_bytes;
  o.hf_template = hf_template;
  return create_checkpoint(dir, meta, tensors, o);
}

}  // namespace wsm
