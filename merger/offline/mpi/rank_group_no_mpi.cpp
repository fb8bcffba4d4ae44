// make_rank_group for a build without MPI (CMake found none): always one rank.
#include "wsm/merger/rank_group.h"
#include "wsm/core/error.h"

namespace wsm::merger {

bool mpi_available() { return false; }

std::unique_ptr<RankGroup> make_rank_group() {
  if (launched_as_rank())
    throw Error("this wsm was built without MPI, but a launcher (mpirun, srun) started it as one of several "
                "ranks: each would merge everything into the same output. Run it as one process, or rebuild "
                "with Open MPI (apt-get install libopenmpi-dev openmpi-bin; CMake finds it)");
  return make_single_rank_group();
}

}  // namespace wsm::merger
