// Issue 12, item 4: byte sizes never wrap. `wsm inspect` of an HDF5 file (written by h5py) that
// declares a [2^31, 2^31] f32 dataset (2^64 bytes, which wrapped to "0 bytes") refuses it with a
// one-line error naming the tensor.
#include <gtest/gtest.h>
#include <unistd.h>

#include "tests/protocol/test_util.h"
#include "tests/run_command.h"

namespace wsm {
namespace {

TEST(SizesCli, InspectRefusesADatasetWhoseByteSizeOverflows) {
  const std::string wsm = std::string(WSM_BINARY_DIR) + "/wsm";
  if (::access(wsm.c_str(), X_OK) != 0) GTEST_SKIP() << wsm << " is not built";
  const test::TempDir dir;
  const auto file = (dir / "huge.h5").string();
  // Chunked and never written: the file stays small, only its dataspace is huge.
  const auto py = test::run_command(std::string(WSM_PYTHON) + " -c \"import h5py\nwith h5py.File('" + file +
                                    "', 'w') as f: f.create_group('tensors').create_dataset('big', shape=(2**31, 2**31), "
                                    "dtype='f4', chunks=(1, 1024))\"");
  if (py.rc != 0) GTEST_SKIP() << "h5py not available: " << py.err;
  const auto r = test::run_command(wsm + " inspect '" + file + "'");
  EXPECT_NE(r.rc, 0) << r.out;
  EXPECT_EQ(r.out.find(" 0 B"), std::string::npos) << r.out;  // the wrapped size is never shown
  EXPECT_NE(r.err.find("tensors/big"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("overflow"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace wsm
