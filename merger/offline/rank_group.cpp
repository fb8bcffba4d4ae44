#include "wsm/merger/rank_group.h"

#include <cstdlib>

#include "wsm/core/error.h"

namespace wsm::merger {
namespace {

class SingleRank final : public RankGroup {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::vector<std::string> all_gather(const std::string& mine) override { return {mine}; }
  std::string broadcast(const std::string& text) override { return text; }
  std::string describe() const override { return "1 process"; }
};

}  // namespace

void agree_or_throw(RankGroup& group, const std::string& my_error) {
  const auto all = group.all_gather(my_error);
  for (std::size_t r = 0; r < all.size(); ++r) {
    if (all[r].empty()) continue;
    if (all.size() == 1) throw GroupFailure(all[r]);
    throw GroupFailure("rank " + std::to_string(r) + " of " + std::to_string(all.size()) + ": " + all[r]);
  }
}

std::unique_ptr<RankGroup> make_single_rank_group() { return std::make_unique<SingleRank>(); }

bool launched_as_rank() {
  // Open MPI's mpirun, PMIx launchers (srun --mpi=pmix, prterun), MPICH's Hydra.
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"}) {
    const char* v = std::getenv(var);
    if (v && *v) return true;
  }
  return false;
}

}  // namespace wsm::merger
