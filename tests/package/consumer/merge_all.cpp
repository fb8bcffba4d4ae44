// Links wsm::schedules, wsm::formats, wsm::merger and wsm::client after a plain find_package(wsm), as an
// outside project would: computes merge weights (wsm::schedules), writes two checkpoints
// (wsm::formats), merges them (wsm::merger) and checks the merged tensor against the weights computed
// here in double precision. Exits non-zero on a mismatch.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "wsm/client/client.h"
#include "wsm/formats/checkpoint.h"
#include "wsm/merger/offline_merge.h"
#include "wsm/schedules/decay.h"

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  const fs::path dir = argc > 1 ? argv[1] : fs::temp_directory_path() / "wsm_consumer";
  fs::create_directories(dir);
  const double values[2] = {1.0, 3.0};
  std::vector<fs::path> inputs;
  for (int i = 0; i < 2; ++i) {
    wsm::Checkpoint ckpt;
    ckpt.meta.step = 100 * (i + 1);
    wsm::Tensor t;
    t.info = {"w", wsm::DType::f64, {4}};
    t.data.resize(4 * sizeof(double));
    for (int e = 0; e < 4; ++e) std::memcpy(t.data.data() + e * sizeof(double), &values[i], sizeof(double));
    ckpt.tensors.push_back(std::move(t));
    inputs.push_back(dir / ("step_" + std::to_string(i) + ".safetensors"));
    wsm::save_checkpoint(inputs.back(), ckpt);
  }
  const wsm::MergeSpec spec = wsm::parse_merge_spec("linear");
  const std::vector<double> w = wsm::merge_weights(spec, 2);
  wsm::merger::OfflineMergeRequest request;
  request.inputs = inputs;
  request.specs = {spec};
  request.outputs = {dir / "merged.safetensors"};
  wsm::merger::run_offline_merge(request);

  const wsm::Checkpoint merged = wsm::load_checkpoint(dir / "merged.safetensors");
  const double expected = w[0] * values[0] + w[1] * values[1];
  double got = 0;
  std::memcpy(&got, merged.tensors.at(0).data.data(), sizeof(double));
  std::printf("consumer: linear weights %.6f %.6f, merged %.12f, expected %.12f\n", w[0], w[1], got, expected);
  return std::fabs(got - expected) <= 1e-12 * std::fabs(expected) ? 0 : 1;
}
