#include "wsm/formats/range_file_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "wsm/core/error.h"

namespace wsm {

RangeFileWriter::RangeFileWriter(const std::vector<LaidOutFile>& layout, const std::vector<TensorByteRange>& ranges) {
  std::map<std::string, std::pair<std::size_t, std::uint64_t>> where;  // tensor -> (file, offset)
  for (std::size_t f = 0; f < layout.size(); ++f)
    for (const auto& [name, at] : layout[f].offsets) where.emplace(name, std::make_pair(f, at));
  std::map<std::size_t, int> opened;  // layout file -> index into fds_
  for (const auto& r : ranges) {
    if (r.size == 0) continue;
    const auto it = where.find(r.tensor);
    if (it == where.end()) throw Error("output layout holds no tensor '" + r.tensor + "'");
    const auto [file, at] = it->second;
    auto slot = opened.find(file);
    if (slot == opened.end()) {
      const auto& path = layout[file].path;
      const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0)
        throw Error(path.string() + ": cannot open the output laid out by rank 0: " + std::strerror(errno) +
                    " (is the output directory on a filesystem every rank sees?)");
      fds_.push_back(fd);
      paths_.push_back(path.string());
      slot = opened.emplace(file, int(fds_.size() - 1)).first;
    }
    const std::string w = paths_[std::size_t(slot->second)] + ": tensor '" + r.tensor + "'";
    if (!targets_.emplace(r.tensor, Target{slot->second, at + r.begin, r.size, 0, w}).second)
      throw Error(w + ": two ranges of one tensor given to one writer");
  }
}

RangeFileWriter::~RangeFileWriter() {
  for (int fd : fds_)
    if (fd >= 0) ::close(fd);
}

void RangeFileWriter::write(const std::string& name, std::uint64_t offset, std::span<const std::byte> src) {
  const auto it = targets_.find(name);
  if (it == targets_.end()) throw Error("tensor '" + name + "' is not among this writer's ranges");
  Target& t = it->second;
  if (offset > t.size || src.size() > t.size - offset)
    throw Error(t.where + ": write of bytes [" + std::to_string(offset) + ", " + std::to_string(offset + src.size()) +
                ") outside its range of " + std::to_string(t.size) + " bytes");
  if (prepared_ || fds_[std::size_t(t.fd)] < 0) throw Error(t.where + ": write after prepare()");
  const char* p = reinterpret_cast<const char*>(src.data());
  std::uint64_t at = t.at + offset;
  std::size_t left = src.size();
  while (left > 0) {
    const ssize_t n = ::pwrite(fds_[std::size_t(t.fd)], p, left, off_t(at));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Error(t.where + ": write failed: " + std::strerror(errno));
    p += n;
    at += std::uint64_t(n);
    left -= std::size_t(n);
  }
  t.written += src.size();  // the engine writes each chunk once: no overlaps to merge
}

void RangeFileWriter::prepare() {
  if (prepared_) return;
  for (const auto& [name, t] : targets_)
    if (t.written != t.size)
      throw Error(t.where + ": only " + std::to_string(t.written) + " of the " + std::to_string(t.size) +
                  " bytes of this range were written; refusing to commit");
  for (std::size_t i = 0; i < fds_.size(); ++i) {
    if (::fsync(fds_[i]) != 0) throw Error(paths_[i] + ": fsync failed: " + std::strerror(errno));
    const int fd = fds_[i];
    fds_[i] = -1;
    if (::close(fd) != 0) throw Error(paths_[i] + ": close failed: " + std::strerror(errno));
  }
  prepared_ = true;
}

}  // namespace wsm
