#include "wsm/formats/safetensors_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "wsm/formats/free_space.h"

namespace fs = std::filesystem;

namespace wsm {

SafetensorsReader::SafetensorsReader(fs::path path) : path_(std::move(path)), file_(path_) {
  const auto bytes = file_.bytes();
  const std::string where = path_.string();
  const std::uint64_t n = safetensors_header_length(bytes, bytes.size(), where);
  header_ = parse_safetensors_header(std::string_view(reinterpret_cast<const char*>(bytes.data()) + 8, n),
                                     bytes.size() - 8 - n, where);
  meta_ = meta_from_strings(header_.metadata, where);
  infos_.reserve(header_.tensors.size());
  for (std::size_t i = 0; i < header_.tensors.size(); ++i) {
    infos_.push_back(header_.tensors[i].info);
    index_.emplace(header_.tensors[i].info.name, i);
  }
}

std::span<const std::byte> SafetensorsReader::data(const std::string& name) const {
  const auto it = index_.find(name);
  if (it == index_.end()) throw Error(path_.string() + ": no tensor '" + name + "'");
  const auto& e = header_.tensors[it->second];
  return file_.bytes().subspan(header_.data_start + e.begin, e.end - e.begin);
}

void SafetensorsReader::read(const std::string& name, std::uint64_t offset, std::span<std::byte> dst) {
  const auto src = data(name);
  if (offset > src.size() || dst.size() > src.size() - offset)
    throw Error(path_.string() + ": tensor '" + name + "': read of bytes [" + std::to_string(offset) + ", " +
                std::to_string(offset + dst.size()) + ") outside its " + std::to_string(src.size()) + " bytes");
  if (dst.empty()) return;
  std::memcpy(dst.data(), src.data() + offset, dst.size());
  // Streaming a multi-GB file through read() would otherwise leave every page it touched counted
  // in this process's RSS; drop the mapping's pages behind large reads (the page cache keeps them).
  constexpr std::size_t kDropAbove = 4u << 20;
  if (dst.size() >= kDropAbove) release_mapped(src.subspan(offset, dst.size()));
}

SafetensorsFileWriter::SafetensorsFileWriter(fs::path path, std::vector<TensorInfo> tensors,
                                             const std::map<std::string, std::string>& metadata)
    : path_(std::move(path)), tensors_(std::move(tensors)) {
  const std::string header = serialize_safetensors_header(tensors_, metadata);
  std::uint64_t offset = header.size();
  for (const auto& t : tensors_) {
    index_.emplace(t.name, offset);
    offset += t.nbytes();
  }
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error(path_.string() + ": cannot create: " + std::strerror(errno));
  // Sizing the file first keeps it sparse until written and lets writes arrive in any order.
  if (::ftruncate(fd_, static_cast<off_t>(offset)) != 0)
    throw Error(path_.string() + ": cannot size to " + std::to_string(offset) + " bytes: " + std::strerror(errno));
  write_all_at(header.data(), header.size(), 0);
}

SafetensorsFileWriter::~SafetensorsFileWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void SafetensorsFileWriter::write_all_at(const void* src, std::size_t size, std::uint64_t at) {
  const char* p = static_cast<const char*>(src);
  while (size > 0) {
    const ssize_t n = ::pwrite(fd_, p, size, static_cast<off_t>(at));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Error(path_.string() + ": write failed: " + std::strerror(errno));
    p += n;
    at += static_cast<std::uint64_t>(n);
    size -= static_cast<std::size_t>(n);
  }
}

void SafetensorsFileWriter::write(const std::string& name, std::uint64_t offset, std::span<const std::byte> src) {
  const auto it = index_.find(name);
  if (it == index_.end()) throw Error(path_.string() + ": tensor '" + name + "' is not in this file's manifest");
  if (fd_ < 0) throw Error(path_.string() + ": write after close");
  write_all_at(src.data(), src.size(), it->second + offset);
}

void SafetensorsFileWriter::close() {
  if (fd_ < 0) return;
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) throw Error(path_.string() + ": close failed: " + std::strerror(errno));
}

namespace {

class SafetensorsWriter final : public CheckpointWriter {
 public:
  SafetensorsWriter(const fs::path& path, const CheckpointMeta& meta, const std::vector<TensorInfo>& tensors)
      : out_(path), file_(out_.temp_path(), tensors, meta_to_strings(meta)) {}
  void write(const std::string& name, std::uint64_t offset, std::span<const std::byte> src) override {
    file_.write(name, offset, src);
  }
  void prepare() override {
    file_.close();
    out_.sync();
  }
  void commit() override {
    prepare();
    out_.commit();
  }
  std::vector<LaidOutFile> layout() const override {
    LaidOutFile f{file_.path(), {}};
    for (const auto& [name, at] : file_.data_offsets()) f.offsets.emplace(name, at);
    return {f};
  }

 private:
  AtomicFile out_;
  SafetensorsFileWriter file_;
};

}  // namespace

std::unique_ptr<CheckpointWriter> create_safetensors(const fs::path& path, const CheckpointMeta& meta,
                                                     const std::vector<TensorInfo>& tensors) {
  require_free_space(path, payload_bytes(tensors));  // the file is sized (sparse) up front, then filled
  return std::make_unique<SafetensorsWriter>(path, meta, tensors);
}

}  // namespace wsm
