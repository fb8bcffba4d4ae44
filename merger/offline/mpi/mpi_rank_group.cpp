// RankGroup over MPI_COMM_WORLD (built only when CMake finds MPI; rank_group_no_mpi.cpp otherwise).
#include <mpi.h>

#include <climits>
#include <string>
#include <vector>

#include "wsm/merger/rank_group.h"
#include "wsm/core/error.h"

namespace wsm::merger {
namespace {

void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throw Error(std::string("MPI: ") + what + " failed: " + std::string(text, std::size_t(len)));
}

class MpiWorld final : public RankGroup {
 public:
  MpiWorld() {
    int provided = 0;
    // Only the main thread calls MPI; the merge engine's threads never do.
    check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    char name[MPI_MAX_PROCESSOR_NAME];
    int len = 0;
    MPI_Get_processor_name(name, &len);
    host_.assign(name, std::size_t(len));
  }
  ~MpiWorld() override { MPI_Finalize(); }

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  std::vector<std::string> all_gather(const std::string& mine) override {
    if (mine.size() > std::size_t(INT_MAX)) throw Error("MPI: message too long to gather");
    const int len = int(mine.size());
    std::vector<int> lens(static_cast<std::size_t>(size_)), displs(static_cast<std::size_t>(size_));
    check(MPI_Allgather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, MPI_COMM_WORLD), "MPI_Allgather");
    long long total = 0;
    for (int r = 0; r < size_; ++r) {
      displs[std::size_t(r)] = int(total);
      total += lens[std::size_t(r)];
    }
    if (total > INT_MAX) throw Error("MPI: gathered messages too long");
    std::string all(std::size_t(total), '\0');
    check(MPI_Allgatherv(mine.data(), len, MPI_CHAR, all.data(), lens.data(), displs.data(), MPI_CHAR,
                         MPI_COMM_WORLD),
          "MPI_Allgatherv");
    std::vector<std::string> out;
    for (int r = 0; r < size_; ++r)
      out.push_back(all.substr(std::size_t(displs[std::size_t(r)]), std::size_t(lens[std::size_t(r)])));
    return out;
  }

  std::string broadcast(const std::string& text) override {
    unsigned long long len = rank_ == 0 ? text.size() : 0;
    check(MPI_Bcast(&len, 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD), "MPI_Bcast");
    if (len > INT_MAX) throw Error("MPI: broadcast message too long");
    std::string out = rank_ == 0 ? text : std::string(std::size_t(len), '\0');
    check(MPI_Bcast(out.data(), int(len), MPI_CHAR, 0, MPI_COMM_WORLD), "MPI_Bcast");
    return out;
  }

  std::string describe() const override {
    return "MPI rank " + std::to_string(rank_) + " of " + std::to_string(size_) + " on " + host_;
  }

 private:
  int rank_ = 0, size_ = 1;
  std::string host_;
};

}  // namespace

bool mpi_available() { return true; }

std::unique_ptr<RankGroup> make_rank_group() {
  if (!launched_as_rank()) return make_single_rank_group();
  return std::make_unique<MpiWorld>();
}

}  // namespace wsm::merger
