// One source for each fact (issue 24, item 3): the same merge run offline (`wsm merge`'s
// run_offline_merge over files) and through the daemon (MergerCore's emission job, written by
// run_emission) records the same provenance, field by field; only the tool name and the sources'
// paths differ. The specs cover all three rules (a shape, EMA-alpha, a table), so the sampling
// rule's three texts are compared, and the model holds an integer tensor, so copied_from_newest is.
// ServeWindowCoverage (item 5): the daemon writes its first output at the first window `wsm merge`
// covers, with the same bytes.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "core_harness.h"
#include "merger/daemon/emission_runner.h"
#include "wsm/formats/checkpoint.h"
#include "wsm/kernels/merge.h"
#include "wsm/merger/offline_merge.h"
#include "wsm/merger/provenance.h"

namespace wsm::merger {
namespace {

namespace fs = std::filesystem;

const std::vector<std::vector<std::int64_t>> kShapes{{4, 3}, {5}};
const std::string kEmulate = "1-sqrt@300;ema:alpha=0.3@300;weights=1,2,3@300";

// The float layers of make_model plus a 2-element "step_counter" whose bytes the hello declares i32.
std::vector<test::OwnedTensor> model_at(std::int64_t step) {
  auto model = test::make_model(step, kShapes);
  test::OwnedTensor counter{"step_counter", {2}, {0.f, 0.f}};
  const std::int32_t bits[2] = {static_cast<std::int32_t>(step), -7};
  std::memcpy(counter.values.data(), bits, sizeof bits);
  model.push_back(counter);
  return model;
}

Checkpoint as_checkpoint(std::int64_t step, const std::vector<test::OwnedTensor>& model) {
  Checkpoint c;
  c.meta.step = step;
  c.meta.tokens = step * 1000;  // as test::begin sends
  c.meta.run_id = "run";
  for (const auto& t : model) {
    Tensor x;
    x.info = {t.name, t.name == "step_counter" ? DType::i32 : DType::f32, t.shape};
    x.data.resize(t.values.size() * sizeof(float));
    std::memcpy(x.data.data(), t.values.data(), x.data.size());
    c.tensors.push_back(std::move(x));
  }
  return c;
}

// The Hello of model_at's models: step_counter declared i32.
v1::Envelope hello_with_counter() {
  auto hello = test::hello("run", model_at(100));
  for (auto& s : *hello.mutable_hello()->mutable_manifest())
    if (s.name() == "step_counter") s.set_dtype("i32");
  return hello;
}

Provenance provenance_of(const fs::path& path) {
  const auto p = provenance_from_metadata(load_checkpoint(path).meta.extra);
  if (!p) throw Error(path.string() + ": no provenance");
  return *p;
}

TEST(ProvenanceParity, OfflineAndDaemonRecordTheSameMerge) {
  // The daemon: checkpoints 100..600 every 100; the emission due at 600 merges (300, 600].
  auto o = options(kEmulate, 600);
  o.running_sums = false;
  CoreHarness h(o);
  h.send("a", hello_with_counter());
  const fs::path files = test::temp_dir("parity-in");
  std::vector<fs::path> inputs;
  for (std::int64_t step = 100; step <= 600; step += 100) {
    const auto model = model_at(step);
    ASSERT_TRUE(h.checkpoint("a", step, model)[0].has_ack()) << step;
    inputs.push_back(files / ("ckpt_" + std::to_string(step) + ".safetensors"));
    save_checkpoint(inputs.back(), as_checkpoint(step, model));
  }
  ASSERT_FALSE(h.jobs.empty());
  const EmissionJob& job = h.jobs.back();
  ASSERT_EQ(job.step, 600);
  ASSERT_EQ(job.outputs.size(), 3u);
  auto backend = kernels::make_backend(kernels::BackendKind::cpu);
  run_emission(job, *backend);

  // Offline: the same checkpoints as files, the same specs and window.
  OfflineMergeRequest req;
  req.inputs = inputs;
  req.window_steps = 300;
  for (const auto& out : job.outputs) {
    req.specs.push_back(out.emulation.spec);
    req.outputs.push_back(files / ("merged_" + std::to_string(req.outputs.size()) + ".safetensors"));
  }
  run_offline_merge(req);

  for (std::size_t i = 0; i < job.outputs.size(); ++i) {
    SCOPED_TRACE(job.outputs[i].emulation.label);
    const Provenance daemon = provenance_of(job.outputs[i].path);
    const Provenance offline = provenance_of(req.outputs[i]);
    EXPECT_EQ(daemon.tool, "wsm serve");
    EXPECT_EQ(offline.tool, "wsm merge");
    EXPECT_EQ(daemon.version, offline.version);
    EXPECT_EQ(daemon.run_id, offline.run_id);
    EXPECT_EQ(daemon.spec, offline.spec);
    EXPECT_EQ(daemon.shape, offline.shape);
    EXPECT_EQ(daemon.floor, offline.floor);
    EXPECT_EQ(daemon.sampling_rule, offline.sampling_rule);
    EXPECT_EQ(daemon.sampling_rule, sampling_rule(req.specs[i], true));
    EXPECT_EQ(daemon.window, offline.window);
    EXPECT_EQ(daemon.axis, offline.axis);
    ASSERT_EQ(daemon.sources.size(), offline.sources.size());
    for (std::size_t j = 0; j < daemon.sources.size(); ++j) {
      EXPECT_EQ(daemon.sources[j].step, offline.sources[j].step) << j;
      EXPECT_EQ(daemon.sources[j].tokens, offline.sources[j].tokens) << j;
      EXPECT_EQ(daemon.sources[j].weight, offline.sources[j].weight) << j;
    }
    EXPECT_EQ(daemon.dtype, offline.dtype);
    EXPECT_EQ(daemon.accumulate, offline.accumulate);
    EXPECT_EQ(daemon.method, offline.method);
    EXPECT_EQ(daemon.copied_from_newest, offline.copied_from_newest);
    EXPECT_EQ(offline.copied_from_newest, std::vector<std::string>{"step_counter"});
    // And the merged bytes agree: the same engine over the same checkpoints and weights.
    const Checkpoint a = load_checkpoint(job.outputs[i].path), b = load_checkpoint(req.outputs[i]);
    ASSERT_EQ(a.tensors.size(), b.tensors.size());
    for (std::size_t t = 0; t < a.tensors.size(); ++t) EXPECT_EQ(a.tensors[t].data, b.tensors[t].data) << t;
  }
  // The three rules give the three texts.
  EXPECT_EQ(sampling_rule(req.specs[0], true), "w_i=f((p_i-p_0)/window)");
  EXPECT_EQ(sampling_rule(req.specs[1], true), "per checkpoint");
  EXPECT_EQ(sampling_rule(req.specs[2], true), "user table");
  EXPECT_EQ(sampling_rule(req.specs[0], false), "w_i=f(i/(k+1))");
}

TEST(ServeWindowCoverage, FirstOutputIsTheFirstWindowWsmMergeCovers) {
  // Checkpoints every 100 steps from step 100, none at 0: the window 800 at step 800 holds all 8
  // and is covered (window_covered). Before, the daemon waited for a checkpoint at or before the
  // window's start, so its first output came at step 900 while `wsm merge` merged at 800.
  auto o = options("linear@800", 100);
  o.running_sums = false;
  CoreHarness h(o);
  h.send("a", hello_with_counter());
  const fs::path files = test::temp_dir("coverage-in");
  std::vector<fs::path> inputs;
  for (std::int64_t step = 100; step <= 800; step += 100) {
    const auto model = model_at(step);
    ASSERT_TRUE(h.checkpoint("a", step, model)[0].has_ack()) << step;
    inputs.push_back(files / ("ckpt_" + std::to_string(step) + ".safetensors"));
    save_checkpoint(inputs.back(), as_checkpoint(step, model));
  }
  std::vector<const EmissionJob*> with_outputs;
  for (const auto& job : h.jobs)
    if (!job.outputs.empty()) with_outputs.push_back(&job);
  ASSERT_EQ(with_outputs.size(), 1u);
  const EmissionJob& job = *with_outputs.front();
  EXPECT_EQ(job.step, 800);
  EXPECT_EQ(job.outputs[0].source_steps, (std::vector<std::int64_t>{100, 200, 300, 400, 500, 600, 700, 800}));
  auto backend = kernels::make_backend(kernels::BackendKind::cpu);
  run_emission(job, *backend);

  OfflineMergeRequest req;
  req.inputs = inputs;
  req.window_steps = 800;
  req.specs = {job.outputs[0].emulation.spec};
  req.outputs = {files / "merged.safetensors"};
  run_offline_merge(req);
  EXPECT_EQ(provenance_of(req.outputs[0]).sources.size(), 8u);
  const Checkpoint a = load_checkpoint(job.outputs[0].path), b = load_checkpoint(req.outputs[0]);
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (std::size_t t = 0; t < a.tensors.size(); ++t) EXPECT_EQ(a.tensors[t].data, b.tensors[t].data) << t;
}

}  // namespace
}  // namespace wsm::merger
