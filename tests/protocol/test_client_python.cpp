// The Python client (protocol/python/wsm_client, run with WSM_PYTHON) streams a sequence of
// checkpoints (a torch state_dict when torch is installed) to a Server on 127.0.0.1; the merged
// outputs equal the double-precision reference with weights from schedules/.
#include <cstdlib>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/merger/serve_test_util.h"

namespace wsm {
namespace {

TEST(ClientPython, SequenceMatchesDoubleReference) {
  if (std::system((std::string(WSM_PYTHON) + " -c 'import zmq, numpy, google.protobuf, xxhash, h5py' 2>/dev/null").c_str()) != 0)
    FAIL() << WSM_PYTHON << " lacks pyzmq/numpy/protobuf/xxhash/h5py (tools/install-deps.sh installs them)";
  const auto out = test::temp_dir("py-out");
  test::ServerThread server(test::server_options(out, "linear:300,1-sqrt:400", 200));

  const std::string cmd = std::string("PYTHONPATH=") + WSM_SOURCE_DIR + "/protocol/python " + WSM_PYTHON + " " + WSM_SOURCE_DIR +
                          "/tests/protocol/python_client_e2e.py --endpoint " + server.endpoint() + " --run py 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  server.server().wait_outputs_idle();

  std::ifstream in(out / "index.json");
  const auto index = nlohmann::json::parse(in);
  std::vector<std::int64_t> steps;
  for (std::int64_t s = 0; s <= 1000; s += 100) steps.push_back(s);
  std::size_t periodic = 0;
  for (const auto& rec : index["outputs"]) {
    if (rec["request_id"].get<std::uint64_t>() != 0) continue;  // the script's merge_now
    ++periodic;
    const auto spec = parse_merge_spec(rec["spec"].get<std::string>());
    const std::int64_t step = rec["step"];
    std::vector<std::int64_t> positions;
    for (auto s : steps)
      if (s <= step) positions.push_back(s);
    const auto sel = select_window(spec, positions, rec["window"].get<std::int64_t>());
    const auto ckpt = load_checkpoint(rec["path"].get<std::string>());
    ASSERT_EQ(ckpt.tensors.size(), 3u);
    for (int t = 0; t < 2; ++t) {
      const auto& tensor = ckpt.tensors[static_cast<std::size_t>(t)];
      const std::size_t n = tensor.data.size() / 4;
      ASSERT_EQ(n, t == 0 ? 64u * 33u : 100u);
      double max_err = 0;
      for (std::size_t i = 0; i < n; ++i) {
        double ref = 0;
        for (std::size_t j = 0; j < sel.indices.size(); ++j)
          ref += sel.weights[j] * test::tensor_value(t, positions[sel.indices[j]], i);
        float got;
        std::memcpy(&got, tensor.data.data() + i * 4, 4);
        max_err = std::max(max_err, std::abs(got - ref));
      }
      EXPECT_LT(max_err, 2e-6) << rec.dump();
    }
    std::int64_t counter;
    std::memcpy(&counter, ckpt.tensors[2].data.data(), 8);
    EXPECT_EQ(counter, step);
  }
  // Due every 200 steps: linear:300 from 200 (0, 100, 200 fill its window: 5 over 200..1000),
  // 1-sqrt:400 from 400 (4 over 400..1000).
  EXPECT_EQ(periodic, 9u);
}

}  // namespace
}  // namespace wsm
