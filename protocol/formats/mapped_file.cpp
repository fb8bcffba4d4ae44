#include "wsm/formats/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <set>

#include "wsm/core/error.h"

namespace wsm {
namespace {

// The SIGBUS handler's view of the live mappings: plain atomics in a fixed array, since a signal
// handler may neither lock nor allocate. Mappings beyond kSlots work unguarded (logged nowhere:
// a merge of more than 16384 mapped files at once is not expected).
constexpr int kSlots = 16384;
struct Slot {
  std::atomic<bool> used{false};
  std::atomic<std::uintptr_t> begin{0}, end{0};
  std::atomic<bool> truncated{false};
};
Slot g_slots[kSlots];
std::uintptr_t g_page = 4096;
struct sigaction g_previous {};

// Passes a fault that is not in a mapping of ours to whatever handled SIGBUS before.
void previous_sigbus(int sig, siginfo_t* info, void* context) {
  if (g_previous.sa_flags & SA_SIGINFO) {
    if (g_previous.sa_sigaction) return g_previous.sa_sigaction(sig, info, context);
  } else if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN) {
    return g_previous.sa_handler(sig);
  }
  ::signal(SIGBUS, SIG_DFL);  // the read faults again and the default action (death) follows
}

// A page past the end of a truncated file: the rest of that mapping becomes zero pages (mmap is a
// plain system call, safe here), so the read completes and the owner finds the mapping truncated.
void on_sigbus(int sig, siginfo_t* info, void* context) {
  const auto addr = reinterpret_cast<std::uintptr_t>(info->si_addr);
  for (Slot& s : g_slots) {
    const auto begin = s.begin.load(std::memory_order_acquire), end = s.end.load(std::memory_order_acquire);
    if (begin == 0 || addr < begin || addr >= end) continue;
    const std::uintptr_t page = addr / g_page * g_page, stop = (end + g_page - 1) / g_page * g_page;
    void* p = ::mmap(reinterpret_cast<void*>(page), stop - page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                     -1, 0);
    if (p == MAP_FAILED) break;
    s.truncated.store(true, std::memory_order_release);
    return;
  }
  previous_sigbus(sig, info, context);
}

}  // namespace

void guard_mapped_reads() {
  static std::once_flag once;
  std::call_once(once, [] {
    g_page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    struct sigaction sa {};
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGBUS, &sa, &g_previous);
  });
}

namespace {

int claim_slot(const std::byte* data, std::size_t size) {
  for (int i = 0; i < kSlots; ++i) {
    bool expected = false;
    if (!g_slots[i].used.compare_exchange_strong(expected, true)) continue;
    g_slots[i].truncated.store(false);
    g_slots[i].end.store(reinterpret_cast<std::uintptr_t>(data) + size, std::memory_order_release);
    g_slots[i].begin.store(reinterpret_cast<std::uintptr_t>(data), std::memory_order_release);
    return i;
  }
  return -1;
}

// Every mapping alive, for changed_mapped_files() (never touched by the signal handler).
std::mutex g_live_mu;
std::set<const MappedFile*> g_live;

}  // namespace

MappedFile::MappedFile(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(path.string() + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw Error(path.string() + ": cannot stat: " + std::strerror(err));
  }
  size_ = static_cast<std::size_t>(st.st_size);
  stamp_ = FileStamp::of(path, st);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      throw Error(path.string() + ": cannot mmap: " + std::strerror(err));
    }
    data_ = static_cast<const std::byte*>(p);
    slot_ = claim_slot(data_, size_);
  }
  ::close(fd);  // the mapping keeps the file alive
  std::lock_guard lock(g_live_mu);
  g_live.insert(this);
}

MappedFile::~MappedFile() {
  {
    std::lock_guard lock(g_live_mu);
    g_live.erase(this);
  }
  if (slot_ >= 0) {
    g_slots[slot_].begin.store(0, std::memory_order_release);
    g_slots[slot_].end.store(0, std::memory_order_release);
    g_slots[slot_].used.store(false, std::memory_order_release);
  }
  if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
}

std::string MappedFile::changed() const {
  if (slot_ >= 0 && g_slots[slot_].truncated.load(std::memory_order_acquire)) {
    struct stat st {};
    return "truncated while being read (" + std::to_string(size_) + " bytes when opened, " +
           (::stat(stamp_.path.c_str(), &st) == 0 ? std::to_string(st.st_size) + " now)" : "removed since)");
  }
  return stamp_.changed();
}

namespace {

// "FILE: what changed" for every live mapping that `wanted` selects and that changed().
template <typename Wanted>
std::vector<std::string> changed_mappings(Wanted wanted) {
  std::lock_guard lock(g_live_mu);
  std::vector<std::string> out;
  for (const MappedFile* m : g_live)
    if (wanted(*m))
      if (auto why = m->changed(); !why.empty()) out.push_back(m->path().string() + ": " + why);
  return out;
}

}  // namespace

std::vector<std::string> changed_mapped_files() {
  return changed_mappings([](const MappedFile&) { return true; });
}

std::vector<std::string> changed_mapped_files(std::span<const std::filesystem::path> files) {
  return changed_mappings([&](const MappedFile& m) {
    return std::any_of(files.begin(), files.end(), [&](const std::filesystem::path& f) {
      return f.lexically_normal() == m.path().lexically_normal();
    });
  });
}

namespace {

// The whole pages inside [p, p+n), as an address range (empty when none).
std::pair<std::uintptr_t, std::uintptr_t> whole_pages(std::span<const std::byte> bytes, bool outward) {
  static const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<std::uintptr_t>(bytes.data());
  const auto end = begin + bytes.size();
  if (outward) return {begin / page * page, (end + page - 1) / page * page};
  return {(begin + page - 1) / page * page, end / page * page};
}

}  // namespace

void prefetch_mapped(std::span<const std::byte> bytes) {
  if (bytes.empty()) return;
  const auto [lo, hi] = whole_pages(bytes, true);
#ifdef MADV_POPULATE_READ
  if (::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_POPULATE_READ) == 0) return;
#endif
  ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_WILLNEED);  // older kernels: read-ahead only
}

void release_mapped(std::span<const std::byte> bytes) {
  const auto [lo, hi] = whole_pages(bytes, false);
  if (hi > lo) ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
}

}  // namespace wsm
