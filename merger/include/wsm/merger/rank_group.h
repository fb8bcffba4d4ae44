#pragma once
// The processes of one job (`mpirun -np N wsm merge`, `srun`), behind the few collective operations
// the distributed merge needs. Without MPI (or without a launcher) it is one rank, so the same code
// runs everywhere; only merger/offline/mpi/mpi_rank_group.cpp knows MPI, and is built when CMake finds it.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "wsm/core/error.h"

namespace wsm::merger {

// A failure every rank of the group throws at the same step (agree_or_throw), so all of them may
// still meet in one more collective call (unlike an error one rank alone hits).
class GroupFailure : public Error {
 public:
  using Error::Error;
};

class RankGroup {
 public:
  virtual ~RankGroup() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Collective: every rank's `mine`, in rank order, on every rank.
  virtual std::vector<std::string> all_gather(const std::string& mine) = 0;
  // Collective: rank 0's `text` on every rank (other ranks' argument is ignored).
  virtual std::string broadcast(const std::string& text) = 0;
  virtual std::string describe() const = 0;  // "1 process (no MPI)", "MPI rank 2 of 8 on node7"
};

// Collective: every rank says whether its part of a step failed ("" = it did not). When any did,
// throws GroupFailure on every rank with the first failing rank's message, so all ranks stop at the
// same point with the same cause ("rank 2 of 3: <message>"; the message alone with one rank).
void agree_or_throw(RankGroup& group, const std::string& my_error);

// The group this process belongs to: MPI's world when built with MPI and started by a launcher
// (mpirun, mpiexec, srun), else one rank. Started by a launcher in a build without MPI, it throws
// (N copies would each merge everything into the same output). MPI is finalized when it is freed.
std::unique_ptr<RankGroup> make_rank_group();
std::unique_ptr<RankGroup> make_single_rank_group();

// True when this build has MPI (`wsm --version` and `wsm merge --help` say which).
bool mpi_available();

// True when the environment says a launcher started this process as one of several ranks.
bool launched_as_rank();

}  // namespace wsm::merger
