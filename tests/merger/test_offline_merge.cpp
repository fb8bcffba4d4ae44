// Offline merge end to end: small HDF5 and safetensors checkpoints merged through the pipeline and
// checked against a double-precision reference (and, for files h5py wrote, against numpy), integer
// tensors copied from the newest, provenance recorded, and validation failures leaving no file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <functional>
#include <omp.h>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "../kernels/merge_reference.h"
#include "wsm/merger/merge_engine.h"
#include "tests/merger/merge_memory_reader.h"
#include "wsm/merger/offline_merge.h"
#include "wsm/core/error.h"

namespace wsm::merger {
namespace {
namespace fs = std::filesystem;
using test::Buffer;

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() / ("wsm-offline-" + std::to_string(getpid()) + "-" + std::to_string(counter_++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(path_)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

Tensor float_tensor(const std::string& name, DType t, std::vector<std::int64_t> shape, std::uint64_t seed) {
  TensorInfo info{name, t, shape};
  Buffer b = test::random_buffer(t, info.numel(), seed);
  return {info, std::move(b.bytes)};
}
Tensor int_tensor(const std::string& name, std::int64_t value) {
  Tensor t{{name, DType::i64, {2}}, std::vector<std::byte>(16)};
  const std::int64_t v[2] = {value, -value};
  std::memcpy(t.data.data(), v, 16);
  return t;
}

// A checkpoint with a mixed-dtype set of tensors (sizes chosen to straddle chunk boundaries).
Checkpoint make_checkpoint(std::int64_t step, std::uint64_t seed, bool with_step = true) {
  Checkpoint c;
  if (with_step) {
    c.meta.step = step;
    c.meta.tokens = step * 4096;
  }
  c.meta.run_id = "test-run";
  c.tensors.push_back(float_tensor("embed.weight", DType::f32, {37, 11}, seed * 10 + 1));
  c.tensors.push_back(float_tensor("layer.0/attn.w", DType::bf16, {1001}, seed * 10 + 2));
  c.tensors.push_back(float_tensor("layer.1.mlp", DType::f16, {3, 5, 7}, seed * 10 + 3));
  c.tensors.push_back(int_tensor("optimizer.step", step));
  c.tensors.push_back({{"empty", DType::f32, {0, 4}}, {}});
  return c;
}

Buffer as_buffer(const Tensor& t) {
  Buffer b(t.info.dtype, t.info.numel());
  b.bytes = t.data;
  return b;
}

const Tensor& find(const Checkpoint& c, const std::string& name) {
  for (const auto& t : c.tensors)
    if (t.info.name == name) return t;
  throw Error("no tensor " + name);
}

// Checks every float tensor of `out` against sum_j w_j x_j over `ins` (oldest first) in double,
// and that integer tensors equal the newest input's.
void expect_merged(const Checkpoint& out, const std::vector<Checkpoint>& ins, const std::vector<double>& w,
                   std::optional<DType> out_dtype, const std::string& what) {
  ASSERT_EQ(out.tensors.size(), ins.back().tensors.size()) << what;
  for (const auto& ref_t : ins.back().tensors) {
    const Tensor& got = find(out, ref_t.info.name);
    EXPECT_EQ(got.info.shape, ref_t.info.shape) << what << " " << ref_t.info.name;
    if (!is_float(ref_t.info.dtype)) {
      EXPECT_EQ(got.data, ref_t.data) << what << ": integer tensor " << ref_t.info.name << " not copied from newest";
      continue;
    }
    const DType expect_dtype = out_dtype ? *out_dtype : ref_t.info.dtype;
    ASSERT_EQ(got.info.dtype, expect_dtype) << what << " " << ref_t.info.name;
    std::vector<Buffer> xs;
    for (const auto& c : ins) xs.push_back(as_buffer(find(c, ref_t.info.name)));
    const auto ref = test::reference_merge(xs, w, 0);
    const Buffer g = as_buffer(got);
    for (std::size_t i = 0; i < ref.value.size(); ++i)
      ASSERT_LE(std::fabs(g.get(i) - ref.value[i]),
                test::error_bound(expect_dtype, false, xs.size(), ref.value[i], ref.magnitude[i]))
          << what << " " << ref_t.info.name << "[" << i << "]";
  }
}

MergeSpec shape(DecayShape s, double floor = 0) { return ShapeRule{s, floor}; }

TEST(OfflineMerge, SafetensorsSeveralShapesOrderedByStep) {
  TempDir dir;
  std::vector<Checkpoint> ins;
  for (int j = 0; j < 4; ++j) ins.push_back(make_checkpoint(1000 * (j + 1), 17 + j));
  // Given newest first and shuffled: the merge must order by recorded step.
  const int given[] = {2, 0, 3, 1};
  OfflineMergeRequest req;
  for (int j : given) {
    const fs::path p = dir.path() / ("ckpt-" + std::to_string(j) + ".safetensors");
    save_checkpoint(p, ins[j]);
    req.inputs.push_back(p);
  }
  req.specs = {shape(DecayShape::linear), shape(DecayShape::one_minus_sqrt), shape(DecayShape::cosine, 0.1)};
  for (int o = 0; o < 3; ++o) req.outputs.push_back(dir.path() / "out" / ("m" + std::to_string(o) + ".safetensors"));
  req.chunk_elements = 100;  // many chunks per tensor through the pipeline
  const auto result = run_offline_merge(req);
  EXPECT_EQ(result.stats.bytes_written, result.plan.merge.bytes_written_per_output * 3);

  for (int o = 0; o < 3; ++o) {
    const auto w = merge_weights(req.specs[o], 4);
    const Checkpoint out = load_checkpoint(req.outputs[o]);
    expect_merged(out, ins, w, std::nullopt, req.specs[o].to_string());
    EXPECT_EQ(out.meta.step, 4000);
    EXPECT_EQ(out.meta.tokens, 4000 * 4096);
    EXPECT_EQ(out.meta.run_id, "test-run");
    // Provenance (read as plain JSON, not through provenance.h): weights, sources in step order,
    // spec, sampling rule, version.
    const auto& x = out.meta.extra;
    const auto p = nlohmann::json::parse(x.at("wsm.provenance"));
    const auto& sources = p.at("sources");
    ASSERT_EQ(sources.size(), 4u);
    for (int j = 0; j < 4; ++j) {
      EXPECT_DOUBLE_EQ(sources[j].at("weight").get<double>(), w[j]);
      EXPECT_EQ(sources[j].at("step").get<std::int64_t>(), 1000 * (j + 1));
    }
    EXPECT_EQ(p.at("tool"), "wsm merge");
    EXPECT_EQ(p.at("spec").get<std::string>(), req.specs[o].to_string());
    EXPECT_EQ(p.at("sampling_rule").get<std::string>(), kSamplingRule);
    EXPECT_DOUBLE_EQ(p.at("floor").get<double>(), req.specs[o].floor());
    EXPECT_EQ(p.at("run_id"), "test-run");
    EXPECT_TRUE(x.count("wsm.version"));
    EXPECT_EQ(p.at("copied_from_newest"), nlohmann::json::array({"optimizer.step"}));
    EXPECT_EQ(provenance_from_metadata(x)->spec, req.specs[o].to_string());
  }
}

TEST(OfflineMerge, Hdf5WindowByStepsAndOutputDtype) {
  TempDir dir;
  std::vector<Checkpoint> ins;
  OfflineMergeRequest req;
  for (int j = 0; j < 5; ++j) {
    ins.push_back(make_checkpoint(100 * (j + 1), 40 + j));
    req.inputs.push_back(dir.path() / ("s" + std::to_string(j) + ".h5"));
    save_checkpoint(req.inputs.back(), ins.back());
  }
  req.specs = {shape(DecayShape::one_minus_sqrt)};
  req.outputs = {dir.path() / "merged.h5"};
  req.window_steps = 300;  // (200, 500]: steps 300, 400, 500
  req.dtype = DType::bf16;
  const auto plan = plan_offline_merge(req);
  ASSERT_EQ(plan.used, (std::vector<std::size_t>{2, 3, 4}));
  EXPECT_FALSE(fs::exists(req.outputs[0])) << "planning must not write";
  run_offline_merge(req);

  const std::vector<std::int64_t> positions = {100, 200, 300, 400, 500};
  const auto sel = select_window(req.specs[0], positions, 300);
  const std::vector<Checkpoint> window(ins.begin() + 2, ins.end());
  expect_merged(load_checkpoint(req.outputs[0]), window, sel.weights, DType::bf16, "window");
}

TEST(OfflineMerge, EveryShapeInSchedules) {
  TempDir dir;
  std::vector<Checkpoint> ins;
  OfflineMergeRequest req;
  for (int j = 0; j < 6; ++j) {
    ins.push_back(make_checkpoint(10 * (j + 1), 70 + j));
    req.inputs.push_back(dir.path() / ("c" + std::to_string(j) + ".safetensors"));
    save_checkpoint(req.inputs.back(), ins.back());
  }
  for (DecayShape s : {DecayShape::linear, DecayShape::cosine, DecayShape::one_minus_sqrt, DecayShape::inverse_sqrt,
                       DecayShape::exponential, DecayShape::wma})
    req.specs.push_back(shape(s));
  for (std::size_t o = 0; o < req.specs.size(); ++o)
    req.outputs.push_back(dir.path() / ("shape" + std::to_string(o) + ".safetensors"));
  req.accumulate_f64 = true;
  run_offline_merge(req);
  for (std::size_t o = 0; o < req.specs.size(); ++o)
    expect_merged(load_checkpoint(req.outputs[o]), ins, merge_weights(req.specs[o], 6), std::nullopt,
                  req.specs[o].to_string());
}

// Each failure must throw before any output exists, and leave no temporary behind.
void expect_fails_closed(const std::vector<Checkpoint>& ins, const std::string& why) {
  TempDir dir;
  OfflineMergeRequest req;
  for (std::size_t j = 0; j < ins.size(); ++j) {
    req.inputs.push_back(dir.path() / ("in" + std::to_string(j) + ".safetensors"));
    save_checkpoint(req.inputs.back(), ins[j]);
  }
  const auto before = dir.listing();
  req.specs = {shape(DecayShape::linear), shape(DecayShape::cosine)};
  req.outputs = {dir.path() / "a.safetensors", dir.path() / "sub" / "b.h5"};
  EXPECT_THROW(run_offline_merge(req), Error) << why;
  EXPECT_EQ(dir.listing(), before) << why << ": something was written";
}

TEST(OfflineMerge, ValidationFailuresLeaveNoOutput) {
  auto base = [] {
    std::vector<Checkpoint> v;
    for (int j = 0; j < 3; ++j) v.push_back(make_checkpoint(j + 1, 90 + j));
    return v;
  };
  auto missing = base();
  missing[1].tensors.erase(missing[1].tensors.begin() + 1);
  expect_fails_closed(missing, "missing tensor");

  auto renamed = base();
  renamed[0].tensors[0].info.name = "embed.weights";
  expect_fails_closed(renamed, "renamed tensor");

  auto reshaped = base();
  reshaped[2].tensors[0].info.shape = {11, 37};
  expect_fails_closed(reshaped, "transposed shape");

  auto retyped = base();
  retyped[1].tensors[3] = Tensor{{"optimizer.step", DType::f64, {2}}, std::vector<std::byte>(16)};
  expect_fails_closed(retyped, "integer tensor turned float");

  auto same_step = base();
  same_step[2].meta.step = 2;
  expect_fails_closed(same_step, "duplicate steps");
}

TEST(OfflineMerge, WeightTableCountMustMatchInputs) {
  TempDir dir;
  OfflineMergeRequest req;
  for (int j = 0; j < 3; ++j) {
    req.inputs.push_back(dir.path() / ("in" + std::to_string(j) + ".h5"));
    save_checkpoint(req.inputs.back(), make_checkpoint(j + 1, j));
  }
  req.specs = {TableRule{TableRule::Kind::merge_weights, {0.5, 0.5}}};
  req.outputs = {dir.path() / "out.h5"};
  EXPECT_THROW(run_offline_merge(req), Error);
  EXPECT_FALSE(fs::exists(req.outputs[0]));
}

// The engine on in-memory inputs (the daemon's use), with a reader that fails mid-way: the error
// comes out, the pipeline stops, and the uncommitted writer leaves nothing.
class FailingReader final : public CheckpointReader {
 public:
  FailingReader(std::unique_ptr<CheckpointReader> inner, int reads_before_failure)
      : inner_(std::move(inner)), left_(reads_before_failure) {}
  const std::vector<TensorInfo>& tensors() const override { return inner_->tensors(); }
  const CheckpointMeta& meta() const override { return inner_->meta(); }
  std::string format() const override { return inner_->format(); }
  const fs::path& path() const override { return inner_->path(); }
  void read(const std::string& name, std::uint64_t offset, std::span<std::byte> dst) override {
    if (left_-- <= 0) throw Error(path().string() + ": injected read failure on tensor '" + name + "'");
    inner_->read(name, offset, dst);
  }

 private:
  std::unique_ptr<CheckpointReader> inner_;
  int left_;
};

TEST(MergeEngine, InMemoryInputsAndFailurePropagation) {
  TempDir dir;
  std::vector<Checkpoint> ins;
  std::vector<std::unique_ptr<CheckpointReader>> readers;
  for (int j = 0; j < 3; ++j) {
    ins.push_back(make_checkpoint(j + 1, 200 + j));
    readers.push_back(std::make_unique<MemoryReader>(std::make_shared<Checkpoint>(ins.back()), "mem" + std::to_string(j)));
  }
  std::vector<CheckpointReader*> rp;
  for (auto& r : readers) rp.push_back(r.get());
  const MergePlan plan = plan_merge(rp, DType::f32);
  auto backend = kernels::make_cpu_backend();
  const std::vector<double> w = {0.2, 0.3, 0.5};
  {
    auto writer = create_checkpoint(dir.path() / "mem.safetensors", ins.back().meta, plan.output_tensors);
    CheckpointWriter* wp = writer.get();
    EngineOptions eo;
    eo.chunk_elements = 64;
    eo.chunks_in_flight = 2;
    std::uint64_t last_done = 0;
    eo.progress = [&](std::uint64_t done, std::uint64_t total) {
      EXPECT_GE(done, last_done);
      EXPECT_LE(done, total);
      last_done = done;
    };
    const auto stats = merge_checkpoints(rp, w, std::span(&wp, 1), plan, *backend, eo);
    EXPECT_EQ(last_done, plan.bytes_written_per_output);
    EXPECT_EQ(stats.bytes_read, plan.bytes_read);
    EXPECT_EQ(stats.buffer_bytes, engine_buffer_bytes(plan, rp, 1, eo));
    writer->commit();
  }
  expect_merged(load_checkpoint(dir.path() / "mem.safetensors"), ins, w, DType::f32, "in-memory");

  const auto before = dir.listing();
  FailingReader failing(std::make_unique<MemoryReader>(std::make_shared<Checkpoint>(ins[1]), "mem1"), 5);
  rp[1] = &failing;
  {
    auto writer = create_checkpoint(dir.path() / "never.safetensors", ins.back().meta, plan.output_tensors);
    CheckpointWriter* wp = writer.get();
    EngineOptions eo;
    eo.chunk_elements = 64;
    EXPECT_THROW(merge_checkpoints(rp, w, std::span(&wp, 1), plan, *backend, eo), Error);
  }
  EXPECT_EQ(dir.listing(), before);
}

// The same checkpoints read in place (safetensors, plain HDF5: CheckpointReader::mapped), copied
// through read() (deflated HDF5) or from memory give the same bytes, with one or two compute
// threads, for M = 6 outputs (register tiles of 4 + 2 outputs), and match the double reference.
TEST(MergeEngine, MappedCopiedAndThreadedInputsGiveIdenticalBytes) {
  TempDir dir;
  std::vector<Checkpoint> ins;
  for (int j = 0; j < 4; ++j) ins.push_back(make_checkpoint(j + 1, 300 + j));
  struct Source {
    std::string name;
    std::function<std::unique_ptr<CheckpointReader>(int)> open;
    bool mapped;
  };
  for (int j = 0; j < 4; ++j) {
    save_checkpoint(dir.path() / ("in" + std::to_string(j) + ".safetensors"), ins[j]);
    save_checkpoint(dir.path() / ("in" + std::to_string(j) + ".h5"), ins[j]);
    save_checkpoint(dir.path() / ("in" + std::to_string(j) + ".deflate.h5"), ins[j],
                    {.shard_bytes = 0, .compression = 3, .chunk_bytes = 256});
  }
  const std::vector<Source> sources = {
      {"safetensors", [&](int j) { return open_checkpoint(dir.path() / ("in" + std::to_string(j) + ".safetensors")); }, true},
      {"hdf5", [&](int j) { return open_checkpoint(dir.path() / ("in" + std::to_string(j) + ".h5")); }, true},
      {"hdf5-deflate", [&](int j) { return open_checkpoint(dir.path() / ("in" + std::to_string(j) + ".deflate.h5")); }, false},
      {"memory", [&](int j) { return std::make_unique<MemoryReader>(std::make_shared<Checkpoint>(ins[j]), "m"); }, false},
  };
  std::vector<std::vector<double>> rows;
  std::vector<double> w;
  for (int o = 0; o < 6; ++o) {
    std::vector<double> row = {0.1 * o, 0.2, 0.3 - 0.05 * o, 0.0};
    row[3] = 1.0 - row[0] - row[1] - row[2];
    rows.push_back(row);
    w.insert(w.end(), row.begin(), row.end());
  }
  auto backend = kernels::make_cpu_backend();
  const int saved_threads = omp_get_max_threads();
  std::optional<std::vector<Checkpoint>> first;
  for (const auto& src : sources)
    for (int threads : {1, 2}) {
      omp_set_num_threads(threads);  // the CPU backend's concurrent_calls: compute threads in the engine
      std::vector<std::unique_ptr<CheckpointReader>> readers;
      std::vector<CheckpointReader*> rp;
      for (int j = 0; j < 4; ++j) {
        readers.push_back(src.open(j));
        rp.push_back(readers.back().get());
      }
      EXPECT_EQ(rp[0]->mapped("layer.0/attn.w").has_value(), src.mapped) << src.name;
      const MergePlan plan = plan_merge(rp, std::nullopt);
      std::vector<std::unique_ptr<CheckpointWriter>> writers;
      std::vector<CheckpointWriter*> wp;
      for (int o = 0; o < 6; ++o) {
        writers.push_back(create_checkpoint(dir.path() / ("out" + std::to_string(o) + ".safetensors"), ins.back().meta,
                                            plan.output_tensors));
        wp.push_back(writers.back().get());
      }
      EngineOptions eo;
      eo.chunk_elements = 100;  // many chunks per tensor, tails not a multiple of the 16-element tile
      merge_checkpoints(rp, w, wp, plan, *backend, eo);
      std::vector<Checkpoint> outs;
      for (int o = 0; o < 6; ++o) {
        writers[o]->commit();
        outs.push_back(load_checkpoint(dir.path() / ("out" + std::to_string(o) + ".safetensors")));
      }
      const std::string what = src.name + " threads=" + std::to_string(threads);
      if (!first) {
        for (int o = 0; o < 6; ++o) expect_merged(outs[o], ins, rows[o], std::nullopt, what + " output " + std::to_string(o));
        first = outs;
        continue;
      }
      for (int o = 0; o < 6; ++o)
        for (std::size_t t = 0; t < outs[o].tensors.size(); ++t)
          EXPECT_EQ(outs[o].tensors[t].data, (*first)[o].tensors[t].data)
              << what << " output " << o << " tensor " << outs[o].tensors[t].info.name;
    }
  omp_set_num_threads(saved_threads);
}

// Files written by h5py (no wsm metadata: merged in the order given), the merged output read back
// by h5py and compared with numpy's float64 mean.
TEST(OfflineMerge, MatchesNumpyOnFilesWrittenByH5py) {
  TempDir dir;
  const fs::path script = dir.path() / "check.py";
  std::ofstream(script) << R"(
import sys, h5py, numpy as np
d, mode = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(5)
if mode == "write":
    for j in range(3):
        with h5py.File(f"{d}/in{j}.h5", "w") as f:
            f["w"] = rng.standard_normal((33, 7)).astype(np.float32)
            f["half"] = rng.standard_normal(1001).astype(np.float16)
            f["count"] = np.array([j, 10 * j], dtype=np.int64)
else:
    ins = [h5py.File(f"{d}/in{j}.h5", "r") for j in range(3)]
    with h5py.File(f"{d}/out.h5", "r") as out:
        t = out["tensors"]
        ref = sum(np.asarray(i["w"], np.float64) for i in ins) / 3
        err = np.max(np.abs(np.asarray(t["w"], np.float64) - ref))
        assert err < 1e-6, f"w: max error {err}"
        ref = sum(np.asarray(i["half"], np.float64) for i in ins) / 3
        got = np.asarray(t["half"], np.float64)
        assert t["half"].dtype == np.float16
        err = np.max(np.abs(got - ref) / (np.abs(ref) * 2.0**-10 + 2.0**-24))
        assert err <= 1.01, f"half: error {err} ulp"
        assert list(t["count"]) == [2, 20], list(t["count"])
    print("numpy check ok")
)";
  const std::string py = std::string(WSM_PYTHON) + " " + script.string() + " " + dir.path().string();
  ASSERT_EQ(0, std::system((py + " write").c_str()));
  OfflineMergeRequest req;
  for (int j = 0; j < 3; ++j) req.inputs.push_back(dir.path() / ("in" + std::to_string(j) + ".h5"));
  req.specs = {shape(DecayShape::linear)};
  req.outputs = {dir.path() / "out.h5"};
  run_offline_merge(req);
  EXPECT_EQ(0, std::system((py + " check").c_str()));
}

}  // namespace
}  // namespace wsm::merger

namespace wsm::merger {
namespace {
// The provenance record survives its metadata encoding, and a damaged record is an error naming it.
TEST(Provenance, RoundTripsThroughMetadata) {
  Provenance p;
  p.tool = "wsm serve";
  p.version = "9.9.9";
  p.run_id = "run/a";
  p.spec = "cosine,floor=0.1";
  p.shape = "cosine";
  p.floor = 0.1;
  p.sampling_rule = "w_i=f((p_i-p_0)/window)";
  p.window = 800;
  p.axis = "steps";
  p.sources = {{"", 100, std::nullopt, 0.25}, {"/x/step_200.h5", 200, 819200, 0.75}};
  p.dtype = "bf16";
  p.accumulate = "f32";
  p.method = "full-merge";
  p.copied_from_newest = {"optimizer.step"};
  const auto meta = provenance_metadata(p);
  EXPECT_EQ(meta.at("wsm.version"), "9.9.9");
  EXPECT_EQ(provenance_from_metadata(meta), p);
  EXPECT_FALSE(provenance_from_metadata({{"format", "pt"}}).has_value());
  try {
    provenance_from_metadata({{"wsm.provenance", R"({"tool": "wsm merge"})"}});
    FAIL() << "a record without its fields must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("wsm.provenance"), std::string::npos) << e.what();
  }
}
}  // namespace
}  // namespace wsm::merger
