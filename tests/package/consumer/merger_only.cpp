// Links wsm::merger alone (no Protobuf or ZeroMQ; run.cmake checks the executable's NEEDED entries):
// writes three checkpoints (safetensors, through wsm::merger's own formats dependency), merges them
// offline with 1-sqrt weights into an HDF5 file, and checks every merged element against the weights
// applied here in double precision. Exits non-zero on a mismatch.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "wsm/formats/checkpoint.h"
#include "wsm/merger/offline_merge.h"
#include "wsm/schedules/decay.h"

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  const fs::path dir = argc > 1 ? argv[1] : fs::temp_directory_path() / "wsm_merger_consumer";
  fs::create_directories(dir);
  constexpr int kInputs = 3, kElements = 5;
  auto value = [](int input, int e) { return 0.5 * input + 0.125 * e - 1.0; };
  std::vector<fs::path> inputs;
  for (int i = 0; i < kInputs; ++i) {
    wsm::Checkpoint ckpt;
    ckpt.meta.step = 100 * (i + 1);
    wsm::Tensor t;
    t.info = {"layer.w", wsm::DType::f64, {kElements}};
    t.data.resize(kElements * sizeof(double));
    for (int e = 0; e < kElements; ++e) {
      const double v = value(i, e);
      std::memcpy(t.data.data() + e * sizeof(double), &v, sizeof(double));
    }
    ckpt.tensors.push_back(std::move(t));
    inputs.push_back(dir / ("step_" + std::to_string(i) + ".safetensors"));
    wsm::save_checkpoint(inputs.back(), ckpt);
  }
  const wsm::MergeSpec spec = wsm::parse_merge_spec("1-sqrt");
  const std::vector<double> w = wsm::merge_weights(spec, kInputs);
  wsm::merger::OfflineMergeRequest request;
  request.inputs = inputs;
  request.specs = {spec};
  request.outputs = {dir / "merged.h5"};
  request.accumulate_f64 = true;
  wsm::merger::run_offline_merge(request);

  const wsm::Checkpoint merged = wsm::load_checkpoint(dir / "merged.h5");
  int failures = 0;
  for (int e = 0; e < kElements; ++e) {
    double expected = 0, got = 0;
    for (int i = 0; i < kInputs; ++i) expected += w[i] * value(i, e);
    std::memcpy(&got, merged.tensors.at(0).data.data() + e * sizeof(double), sizeof(double));
    failures += std::fabs(got - expected) > 1e-12 * std::max(1.0, std::fabs(expected));
  }
  std::printf("consumer (merger only): 1-sqrt over %d checkpoints, %d of %d elements wrong\n", kInputs, failures,
              kElements);
  return failures == 0 ? 0 : 1;
}
