// The merge engine's pipeline (merger/engine/merge_pipeline.h): a start that fails at any thread, or a
// stage that fails on its first chunk, comes back as the error, in bounded time, with every thread
// the pipeline started joined (the process's thread count is back where it was); and the engine
// still merges correctly afterwards (checked against the double-precision reference).
#include <gtest/gtest.h>
#include <omp.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <iostream>
#include <map>
#include <mutex>
#include <thread>

#include "../kernels/merge_reference.h"
#include "tests/merger/merge_memory_reader.h"
#include "wsm/core/error.h"
#include "wsm/merger/merge_engine.h"

namespace wsm::merger {
namespace {
using test::Buffer;

std::size_t thread_count() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/task")) ++n;
  return n;
}
// The count once it has settled at `expected` (a joined thread leaves /proc a moment after), or
// the count after 2 s.
std::size_t thread_count_settled(std::size_t expected) {
  std::size_t n = thread_count();
  for (int i = 0; i < 200 && n != expected; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    n = thread_count();
  }
  return n;
}

// Output bytes kept in memory; optionally fails on its first write.
class MemoryWriter final : public CheckpointWriter {
 public:
  MemoryWriter(const std::vector<TensorInfo>& tensors, bool fail_first_write) : fail_(fail_first_write) {
    for (const auto& t : tensors) bytes[t.name].resize(t.nbytes());
  }
  void write(const std::string& name, std::uint64_t offset, std::span<const std::byte> src) override {
    if (fail_) throw Error("injected write failure on tensor '" + name + "'");
    std::lock_guard lock(mutex_);
    std::copy(src.begin(), src.end(), bytes.at(name).begin() + static_cast<std::ptrdiff_t>(offset));
  }
  void prepare() override {}
  void commit() override {}
  std::map<std::string, std::vector<std::byte>> bytes;

 private:
  bool fail_;
  std::mutex mutex_;
};

struct Fixture {
  std::vector<std::shared_ptr<Checkpoint>> ins;
  std::vector<std::unique_ptr<CheckpointReader>> readers;
  std::vector<CheckpointReader*> rp;
  MergePlan plan;
  std::vector<double> w;  // 2 outputs x 3 inputs
  Fixture() {
    for (int j = 0; j < 3; ++j) {
      auto c = std::make_shared<Checkpoint>();
      c->meta.step = j + 1;
      for (int t = 0; t < 3; ++t) {
        TensorInfo info{std::string(1, char('a' + t)), DType::f32, {1000 + 37 * t}};
        c->tensors.push_back({info, test::random_buffer(DType::f32, info.numel(), 10 * j + t).bytes});
      }
      ins.push_back(c);
      readers.push_back(std::make_unique<MemoryReader>(c, "mem" + std::to_string(j)));
      rp.push_back(readers.back().get());
    }
    plan = plan_merge(rp, std::nullopt);
    w = {0.2, 0.3, 0.5, 0.6, 0.3, 0.1};
  }
};

// Runs a merge on another thread (with `omp_threads` OpenMP threads, the CPU backend's compute
// threads); a pipeline that hangs fails the test instead of stalling ctest.
EngineStats bounded(int omp_threads, const std::function<EngineStats()>& merge) {
  auto done = std::async(std::launch::async, [&] {
    omp_set_num_threads(omp_threads);
    return merge();
  });
  if (done.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
    std::cerr << "merge pipeline hung after a failure\n";
    std::abort();
  }
  return done.get();
}

void expect_reference(const Fixture& f, const std::vector<std::unique_ptr<MemoryWriter>>& outs) {
  for (std::size_t o = 0; o < outs.size(); ++o)
    for (std::size_t t = 0; t < f.plan.output_tensors.size(); ++t) {
      const TensorInfo& info = f.plan.output_tensors[t];
      std::vector<Buffer> xs;
      for (const auto& c : f.ins) {
        xs.emplace_back(DType::f32, info.numel());
        xs.back().bytes = c->tensors[t].data;
      }
      const auto ref = test::reference_merge(xs, f.w, o);
      Buffer got(DType::f32, info.numel());
      got.bytes = outs[o]->bytes.at(info.name);
      for (std::size_t i = 0; i < ref.value.size(); ++i)
        ASSERT_LE(std::fabs(got.get(i) - ref.value[i]),
                  test::error_bound(DType::f32, false, xs.size(), ref.value[i], ref.magnitude[i]))
            << "output " << o << " " << info.name << "[" << i << "]";
    }
}

TEST(MergePipeline, FailedStartAtAnyThreadJoinsWhatStarted) {
  Fixture f;
  auto backend = kernels::make_cpu_backend();
  EngineOptions eo;
  eo.chunk_elements = 64;
  eo.chunks_in_flight = 2;
  auto merge = [&](bool fail_write) {
    std::vector<std::unique_ptr<MemoryWriter>> outs;
    std::vector<CheckpointWriter*> wp;
    for (int o = 0; o < 2; ++o) {
      outs.push_back(std::make_unique<MemoryWriter>(f.plan.output_tensors, fail_write && o == 1));
      wp.push_back(outs.back().get());
    }
    // Three compute threads (two extra), so every role's start can fail.
    bounded(3, [&] { return merge_checkpoints(f.rp, f.w, wp, f.plan, *backend, eo); });
    return outs;
  };
  const std::size_t threads = thread_count();
  std::vector<std::string> roles;
  eo.before_thread_start = [&](std::string_view role) { roles.emplace_back(role); };
  expect_reference(f, merge(false));
  ASSERT_EQ(roles, (std::vector<std::string>{"reader", "writer", "writer", "compute", "compute"}));
  EXPECT_EQ(thread_count_settled(threads), threads);

  for (std::size_t fail_at = 0; fail_at < roles.size(); ++fail_at) {
    std::size_t started = 0;
    eo.before_thread_start = [&](std::string_view role) {
      if (started++ != fail_at) return;
      std::string what = "injected start failure at thread ";
      what.append(std::to_string(fail_at)).append(" (").append(role).append(")");
      throw Error(what);
    };
    try {
      merge(false);
      ADD_FAILURE() << "no error for a start failing at thread " << fail_at;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("injected start failure at thread " + std::to_string(fail_at)),
                std::string::npos)
          << e.what();
    }
    EXPECT_EQ(thread_count_settled(threads), threads) << "threads left running after a start failing at thread " << fail_at;
  }

  // A writer failing on its first chunk stops the reader and the compute threads too.
  eo.before_thread_start = nullptr;
  try {
    merge(true);
    ADD_FAILURE() << "no error for a failing writer";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("injected write failure"), std::string::npos) << e.what();
  }
  EXPECT_EQ(thread_count_settled(threads), threads);

  // And the engine is none the worse for it.
  expect_reference(f, merge(false));
}

}  // namespace
}  // namespace wsm::merger
