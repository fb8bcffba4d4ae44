#pragma once
// One safetensors file: a zero-copy mmap reader and a writer that lays the header out up front and
// then takes tensor bytes in any order (pwrite at their final offsets).
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "wsm/formats/atomic_file.h"
#include "wsm/formats/checkpoint.h"
#include "wsm/formats/mapped_file.h"
#include "wsm/formats/safetensors_header.h"

namespace wsm {

class SafetensorsReader final : public CheckpointReader {
 public:
  explicit SafetensorsReader(std::filesystem::path path);
  const std::vector<TensorInfo>& tensors() const override { return infos_; }
  const CheckpointMeta& meta() const override { return meta_; }
  std::string format() const override { return "safetensors"; }
  const std::filesystem::path& path() const override { return path_; }
  void read(const std::string& name, std::uint64_t offset, std::span<std::byte> dst) override;
  std::optional<std::span<const std::byte>> mapped(const std::string& name) override { return data(name); }

  // Zero-copy view of a tensor's bytes inside the mapping (valid while the reader lives).
  std::span<const std::byte> data(const std::string& name) const;
  const std::map<std::string, std::string>& raw_metadata() const { return header_.metadata; }

 private:
  std::filesystem::path path_;
  MappedFile file_;
  SafetensorsHeader header_;
  std::vector<TensorInfo> infos_;
  CheckpointMeta meta_;
  std::unordered_map<std::string, std::size_t> index_;
};

// Writes one safetensors file at exactly `path` (no temporary: callers wrap it in AtomicFile).
class SafetensorsFileWriter {
 public:
  SafetensorsFileWriter(std::filesystem::path path, std::vector<TensorInfo> tensors,
                        const std::map<std::string, std::string>& metadata);
  ~SafetensorsFileWriter();
  SafetensorsFileWriter(const SafetensorsFileWriter&) = delete;
  SafetensorsFileWriter& operator=(const SafetensorsFileWriter&) = delete;

  bool contains(const std::string& name) const { return index_.contains(name); }
  void write(const std::string& name, std::uint64_t offset, std::span<const std::byte> src);
  void close();  // flushes and closes; fsync is the AtomicFile's job

 private:
  void write_all_at(const void* src, std::size_t size, std::uint64_t at);

  std::filesystem::path path_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, std::uint64_t> index_;  // name -> absolute file offset of its data
  int fd_ = -1;
};

// A single-file safetensors checkpoint written through a temporary name.
std::unique_ptr<CheckpointWriter> create_safetensors(const std::filesystem::path& path, const CheckpointMeta& meta,
                                                     const std::vector<TensorInfo>& tensors);

}  // namespace wsm
