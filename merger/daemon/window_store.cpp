#include "merger/daemon/window_store.h"

#include <algorithm>
#include <cstdio>

#include <spdlog/spdlog.h>

#include "merger/daemon/run_id.h"
#include "wsm/formats/checkpoint_name.h"
#include "wsm/core/error.h"
#include "wsm/schedules/decay.h"

namespace wsm::merger {

namespace fs = std::filesystem;

std::int64_t position(const StoredCheckpoint& c, Axis axis) { return axis == Axis::steps ? c.step : c.tokens; }

namespace {
const std::vector<Entry> kNone;
}  // namespace

WindowStore::WindowStore(StoreOptions options, std::vector<Emulation> emulations)
    : options_(std::move(options)), emulations_(std::move(emulations)) {
  if (!options_.store_dir.empty()) {
    fs::create_directories(options_.store_dir);
    writer_ = std::make_unique<StoreWriter>(options_.write_retry);
  }
}

bool WindowStore::backlogged() const { return writer_ && writer_->backlog_bytes() > options_.write_backlog; }

void WindowStore::flush() {
  if (writer_) writer_->flush();
  spill();
}

fs::path WindowStore::file_for(const StoredCheckpoint& c) const {
  return run_folder(options_.store_dir, c.run_id) / checkpoint_file_name(c.step);
}

void WindowStore::rebuild_from_disk() {
  if (options_.store_dir.empty()) return;
  for (const auto& dir : fs::directory_iterator(options_.store_dir)) {
    if (!dir.is_directory() || dir.path().filename().string().find(".tmp-") != std::string::npos) continue;
    for (const auto& f : fs::directory_iterator(dir.path())) {
      const auto name = f.path().filename().string();
      if (!f.is_regular_file() || f.path().extension() != ".h5" || name.find(".tmp-") != std::string::npos) continue;
      try {
        auto c = load_stored(f.path());
        // Only a run's own folder holds its files (merger/daemon/run_id.h); older wsm versions mapped
        // several ids onto one folder, and such files could belong to any of them.
        if (c->run_id != dir.path().filename().string())
          throw Error("run id '" + c->run_id + "' is not its folder's name");
        auto& list = runs_[c->run_id];
        if (std::any_of(list.begin(), list.end(), [&](const Entry& e) { return e->step == c->step; })) continue;
        list.push_back(std::move(c));
      } catch (const std::exception& e) {
        spdlog::warn("store: skipping {}: {}", f.path().string(), e.what());
      }
    }
  }
  for (auto& [run, list] : runs_) {
    std::sort(list.begin(), list.end(), [](const Entry& a, const Entry& b) { return a->step < b->step; });
    retain(run);
    spdlog::info("store: rebuilt run '{}' with {} checkpoints from {}", run, runs_[run].size(),
                 options_.store_dir.string());
  }
}

std::vector<Entry> WindowStore::add(std::shared_ptr<StoredCheckpoint> c) {
  auto& list = runs_[c->run_id];
  if (!list.empty()) {
    const auto& newest = *list.back();
    if (c->step <= newest.step)
      throw Error("run '" + c->run_id + "': step " + std::to_string(c->step) + " is not newer than step " +
                  std::to_string(newest.step) + " already in the window");
    for (const auto& e : emulations_)
      if (e.axis == Axis::tokens && c->tokens <= newest.tokens)
        throw Error("run '" + c->run_id + "': tokens " + std::to_string(c->tokens) + " at step " +
                    std::to_string(c->step) + " do not grow past " + std::to_string(newest.tokens));
  }
  if (!options_.store_dir.empty()) {
    c->file = file_for(*c);
    c->lease = std::make_shared<FileLease>(c->file);
  }
  memory_bytes_ += c->nbytes();
  list.push_back(std::move(c));
  if (writer_) writer_->submit(list.back());
  auto dropped = retain(list.back()->run_id);
  spill();
  return dropped;
}

std::vector<Entry> WindowStore::retain(const std::string& run_id) {
  auto& list = runs_[run_id];
  if (list.empty()) return {};
  std::size_t keep_from = list.size() - 1;
  if (emulations_.empty()) keep_from = 0;
  for (const auto& e : emulations_) {
    const std::int64_t lo = position(*list.back(), e.axis) - e.window;
    std::size_t anchor = 0;  // no checkpoint at or before lo yet: keep everything
    for (std::size_t i = list.size(); i-- > 0;)
      if (position(*list[i], e.axis) <= lo) {
        anchor = i;
        break;
      }
    keep_from = std::min(keep_from, anchor);
  }
  for (std::size_t i = 0; i < keep_from; ++i) {
    const auto& old = list[i];
    if (old->in_memory()) retire(old);
    if (old->lease) old->lease->dropped = true;  // the file goes when its last reader is done
    spdlog::debug("window: run '{}' dropped step {}", run_id, old->step);
  }
  std::vector<Entry> dropped(list.begin(), list.begin() + static_cast<std::ptrdiff_t>(keep_from));
  list.erase(list.begin(), list.begin() + static_cast<std::ptrdiff_t>(keep_from));
  return dropped;
}

void WindowStore::retire(const Entry& e) {
  memory_bytes_ -= e->nbytes();
  retired_.push_back(e);
}

std::uint64_t WindowStore::retired_bytes() const {
  std::erase_if(retired_, [](const std::weak_ptr<const StoredCheckpoint>& e) { return e.expired(); });
  std::uint64_t bytes = 0;
  for (const auto& e : retired_)
    if (auto alive = e.lock()) bytes += alive->nbytes();
  return bytes;
}

void WindowStore::spill() {
  const std::uint64_t extra = (extra_bytes_ ? extra_bytes_() : 0) + retired_bytes();
  const std::uint64_t budget = options_.memory_budget > extra ? options_.memory_budget - extra : 0;
  if (memory_bytes_ <= budget) return;
  if (options_.store_dir.empty()) {
    if (!warned_budget_)
      spdlog::warn("window: {} bytes in RAM (+{} of running sums, checkpoints being received and"
                   " outputs still reading dropped ones) exceed --memory-budget {} and there is no --store "
                   "to spill to", memory_bytes_, extra, options_.memory_budget);
    warned_budget_ = true;
    return;
  }
  // Oldest first across runs: the newest checkpoints are the likeliest to be read again soon.
  // Only checkpoints whose file is persisted can drop their RAM copy.
  while (memory_bytes_ > budget) {
    Entry* oldest = nullptr;
    for (auto& [run, list] : runs_)
      for (auto& e : list)
        if (e->in_memory() && e->lease && e->lease->persisted && (!oldest || e->step < (*oldest)->step)) {
          oldest = &e;
          break;
        }
    if (!oldest) break;
    retire(*oldest);
    spdlog::debug("window: spilled run '{}' step {} to {}", (*oldest)->run_id, (*oldest)->step,
                  (*oldest)->file.string());
    *oldest = without_memory(**oldest);
  }
}

std::uint64_t WindowStore::pinned_bytes() const {
  std::uint64_t pinned = retired_bytes();
  if (options_.store_dir.empty()) return pinned + memory_bytes_;
  for (const auto& [run, list] : runs_)
    for (const auto& e : list)
      if (e->in_memory() && !(e->lease && e->lease->persisted)) pinned += e->nbytes();
  return pinned;
}

bool WindowStore::contains(const std::string& run_id, std::int64_t step) const {
  const auto& list = entries(run_id);
  return std::any_of(list.begin(), list.end(), [&](const Entry& e) { return e->step == step; });
}

std::int64_t WindowStore::newest_step(const std::string& run_id) const {
  const auto& list = entries(run_id);
  return list.empty() ? -1 : list.back()->step;
}

const std::vector<Entry>& WindowStore::entries(const std::string& run_id) const {
  auto it = runs_.find(run_id);
  return it == runs_.end() ? kNone : it->second;
}

std::vector<std::string> WindowStore::runs() const {
  std::vector<std::string> out;
  for (const auto& [run, list] : runs_) out.push_back(run);
  return out;
}

bool WindowStore::covered(const std::string& run_id, const Emulation& e) const {
  // The rule `wsm merge` warns by (wsm/schedules/decay.h): one rule offline and online.
  std::vector<std::int64_t> positions;
  for (const auto& c : entries(run_id)) positions.push_back(position(*c, e.axis));
  return window_covered(positions, e.window);
}

}  // namespace wsm::merger
