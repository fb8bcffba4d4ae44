#include "wsm/formats/multipart_checkpoint.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

#include <xxhash.h>

#include "wsm/formats/part_layout.h"

namespace wsm {

namespace fs = std::filesystem;

namespace {

std::vector<fs::path> part_files(const fs::path& dir) {
  std::vector<fs::path> parts;
  std::error_code ec;
  for (const auto& f : fs::directory_iterator(dir, ec)) {
    const auto name = f.path().filename().string();
    if (name.rfind("part-rank", 0) == 0 && f.path().extension() == ".h5" && name.find(".tmp-") == std::string::npos &&
        f.is_regular_file(ec))
      parts.push_back(f.path());
  }
  std::sort(parts.begin(), parts.end());
  return parts;
}

// Provenance every part of one merged checkpoint must share: the same merge of the same steps
// (the daemons' identical provenance records, wsm/merger/provenance.h).
constexpr const char* kSharedKeys[] = {"wsm.provenance"};

struct Part {
  std::unique_ptr<CheckpointReader> reader;
  PartLayout layout;
};

struct Block {
  std::size_t part = 0;
  std::string entry;
  TensorSlice slice;
};

class MultipartReader final : public CheckpointReader {
 public:
  explicit MultipartReader(fs::path dir) : dir_(std::move(dir)) {
    for (const auto& file : part_files(dir_)) {
      Part p;
      p.reader = open_checkpoint(file);
      const auto& extra = p.reader->meta().extra;
      const auto it = extra.find(kPartLayoutKey);
      if (it == extra.end()) throw Error(file.string() + ": not a part of a multi-part checkpoint (no " + kPartLayoutKey + " metadata)");
      p.layout = layout_from_json(it->second, file.string());
      parts_.push_back(std::move(p));
    }
    if (parts_.empty()) throw Error(dir_.string() + ": no part-rank*.h5 files");
    check_parts();
    collect_tensors();
    meta_ = parts_.front().reader->meta();
    meta_.extra.erase(kPartLayoutKey);
  }

  const std::vector<TensorInfo>& tensors() const override { return tensors_; }
  const CheckpointMeta& meta() const override { return meta_; }
  std::string format() const override { return "multi-part"; }
  const fs::path& path() const override { return dir_; }

  void read(const std::string& name, std::uint64_t offset, std::span<std::byte> dst) override {
    const auto& t = info(name);
    const auto total = t.nbytes();
    if (offset > total || dst.size() > total - offset)
      throw Error(dir_.string() + ": tensor '" + name + "': read past its " + std::to_string(total) + " bytes");
    if (dst.empty()) return;
    const auto& blocks = blocks_.at(name);
    if (blocks.front().slice.replicated) return read_from(blocks.front(), offset, dst);
    const std::uint64_t esz = dtype_size(t.dtype);
    const auto& g = t.shape;
    const std::uint64_t row = (g.empty() ? 1 : static_cast<std::uint64_t>(g.back())) * esz;  // bytes per global row
    const std::uint64_t end = offset + dst.size();
    std::vector<std::int64_t> lead(g.empty() ? 0 : g.size() - 1);
    for (std::uint64_t r = offset / row; r * row < end; ++r) {
      unravel(r, g, lead);
      for (const auto& b : blocks) copy_row(b, r, row, esz, lead, offset, dst);
    }
  }

 private:
  static void unravel(std::uint64_t r, const std::vector<std::int64_t>& g, std::vector<std::int64_t>& lead) {
    for (std::size_t d = lead.size(); d-- > 0;) {
      lead[d] = static_cast<std::int64_t>(r % static_cast<std::uint64_t>(g[d]));
      r /= static_cast<std::uint64_t>(g[d]);
    }
  }

  // Copies the part of global row r that block b holds and [offset, offset + dst.size()) asks for.
  void copy_row(const Block& b, std::uint64_t r, std::uint64_t row, std::uint64_t esz,
                const std::vector<std::int64_t>& lead, std::uint64_t offset, std::span<std::byte> dst) {
    const auto& s = b.slice;
    std::uint64_t local_row = 0;
    for (std::size_t d = 0; d < lead.size(); ++d) {
      if (lead[d] < s.offsets[d] || lead[d] >= s.offsets[d] + s.lengths[d]) return;
      local_row = local_row * static_cast<std::uint64_t>(s.lengths[d]) + static_cast<std::uint64_t>(lead[d] - s.offsets[d]);
    }
    const std::uint64_t last_off = s.offsets.empty() ? 0 : static_cast<std::uint64_t>(s.offsets.back());
    const std::uint64_t last_len = s.lengths.empty() ? 1 : static_cast<std::uint64_t>(s.lengths.back());
    const std::uint64_t run_begin = r * row + last_off * esz, run_end = run_begin + last_len * esz;
    const std::uint64_t lo = std::max(run_begin, offset), hi = std::min(run_end, offset + dst.size());
    if (lo >= hi) return;
    read_from(b, local_row * last_len * esz + (lo - run_begin), dst.subspan(lo - offset, hi - lo));
  }

  void read_from(const Block& b, std::uint64_t offset, std::span<std::byte> dst) {
    auto& reader = *parts_[b.part].reader;
    auto key = std::make_pair(b.part, b.entry);
    auto it = mapped_.find(key);
    if (it == mapped_.end()) it = mapped_.emplace(key, reader.mapped(b.entry)).first;
    if (it->second) std::memcpy(dst.data(), it->second->data() + offset, dst.size());
    else reader.read(b.entry, offset, dst);
  }

  void check_parts() {
    const auto& first = parts_.front();
    std::map<int, std::string> owner;
    for (const auto& p : parts_) {
      const auto file = p.reader->path().filename().string();
      if (p.layout.run_id != first.layout.run_id || p.layout.world_size != first.layout.world_size)
        throw Error(dir_.string() + ": part " + file + " is of run '" + p.layout.run_id + "' with world size " +
                    std::to_string(p.layout.world_size) + ", not '" + first.layout.run_id + "' with " +
                    std::to_string(first.layout.world_size));
      if (p.reader->meta().step != first.reader->meta().step)
        throw Error(dir_.string() + ": part " + file + " is of another step than " + first.reader->path().filename().string());
      for (const char* key : kSharedKeys) {
        const auto& a = p.reader->meta().extra, &b = first.reader->meta().extra;
        const auto ia = a.find(key), ib = b.find(key);
        if ((ia == a.end()) != (ib == b.end()) || (ia != a.end() && ia->second != ib->second))
          throw Error(dir_.string() + ": parts " + first.reader->path().filename().string() + " and " + file +
                      " disagree on " + key + " (" + (ib == b.end() ? "-" : ib->second) + " vs " +
                      (ia == a.end() ? "-" : ia->second) + "): their daemons merged different checkpoints");
      }
      for (int r : p.layout.ranks)
        if (auto [it, fresh] = owner.emplace(r, file); !fresh)
          throw Error(dir_.string() + ": rank " + std::to_string(r) + " is in two parts, " + it->second + " and " + file);
    }
    std::string missing;
    for (int r = 0; r < first.layout.world_size; ++r)
      if (!owner.contains(r)) {
        if (!missing.empty()) missing += ',';
        missing += std::to_string(r);
      }
    if (!missing.empty())
      throw Error(dir_.string() + ": incomplete multi-part checkpoint: no part holds ranks " + missing + " of " +
                  std::to_string(first.layout.world_size) + " (" + std::to_string(parts_.size()) +
                  " parts present; the others may still be being written)");
  }

  void collect_tensors() {
    for (std::size_t i = 0; i < parts_.size(); ++i)
      for (const auto& e : parts_[i].layout.entries) {
        const auto& part_info = parts_[i].reader->info(e.entry);
        if (part_info.shape != e.slice.lengths)
          throw Error(parts_[i].reader->path().string() + ": tensor '" + e.entry + "' has not the shape of its slice");
        auto [it, fresh] = blocks_.try_emplace(e.name);
        if (fresh) tensors_.push_back({e.name, part_info.dtype, e.slice.global_shape});
        const auto& t = info(e.name);
        if (t.dtype != part_info.dtype)
          throw Error(dir_.string() + ": tensor '" + e.name + "' is " + std::string(dtype_name(t.dtype)) + " in one part and " +
                      std::string(dtype_name(part_info.dtype)) + " in " + parts_[i].reader->path().filename().string());
        it->second.push_back({i, e.entry, e.slice});
      }
    for (const auto& t : tensors_) check_tensor(t);
  }

  void check_tensor(const TensorInfo& t) {
    const auto& blocks = blocks_.at(t.name);
    std::vector<TensorSlice> slices;
    std::size_t replicated = 0;
    for (const auto& b : blocks) {
      slices.push_back(b.slice);
      replicated += b.slice.replicated;
    }
    const std::string where = dir_.string() + ": tensor '" + t.name + "': ";
    if (replicated != 0 && replicated != blocks.size()) throw Error(where + "replicated in some parts and sliced in others");
    if (replicated == 0) {
      if (auto problem = tiling_problem(slices, true)) throw Error(where + *problem);
      return;
    }
    const auto first = digest(blocks.front(), t.nbytes());
    for (std::size_t i = 1; i < blocks.size(); ++i)
      if (digest(blocks[i], t.nbytes()) != first)
        throw Error(where + "replicated copies differ (" + parts_[blocks.front().part].reader->path().filename().string() +
                    " vs " + parts_[blocks[i].part].reader->path().filename().string() + ")");
  }

  std::uint64_t digest(const Block& b, std::uint64_t nbytes) {
    XXH3_state_t* state = XXH3_createState();
    if (!state) throw Error("xxhash: cannot allocate a checksum state");
    std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> guard(state, XXH3_freeState);
    XXH3_64bits_reset(state);
    std::vector<std::byte> buf(std::min<std::uint64_t>(nbytes, 16ull << 20));
    for (std::uint64_t off = 0; off < nbytes; off += buf.size()) {
      const auto n = std::min<std::uint64_t>(buf.size(), nbytes - off);
      read_from(b, off, {buf.data(), n});
      XXH3_64bits_update(state, buf.data(), n);
    }
    return XXH3_64bits_digest(state);
  }

  fs::path dir_;
  std::vector<Part> parts_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::vector<Block>> blocks_;
  std::map<std::pair<std::size_t, std::string>, std::optional<std::span<const std::byte>>> mapped_;
  CheckpointMeta meta_;
};

}  // namespace

bool is_multipart_dir(const fs::path& dir) { return !part_files(dir).empty(); }

std::unique_ptr<CheckpointReader> open_multipart(const fs::path& dir) { return std::make_unique<MultipartReader>(dir); }

}  // namespace wsm
