// `wsm bench merge`: the merge engine's speed against the I/O it cannot avoid, measured side by side in
// one run (files in the page cache): merging K checkpoints into M = 1 and M = 3 outputs, reading the
// same K inputs and writing one output without computing, and memcpy of the same bytes. A kernel-only
// mode times the backends on in-memory buffers (and the CUDA kernels against device memcpy).
// `wsm bench ingest` is the daemon's (cmd_bench_ingest.cpp), registered here.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>
#include <random>

#include "wsm/kernels/cuda_bench.h"
#include "wsm/kernels/merge.h"
#include "wsm/merger/offline_merge.h"
#include "wsm/merger/rank_group.h"
#include "wsm/core/error.h"
#include "tools/commands.h"

namespace wsm::tools {
namespace {
namespace fs = std::filesystem;

struct BenchArgs {
  double size_mb = 64;  // per input
  int inputs = 8;
  std::string dtype = "bf16";
  std::string dir = "/dev/shm";
  std::string format = "safetensors";
  std::string backend = "cpu";
  int repeats = 3;
  std::optional<std::uint64_t> chunk_elements;  // default: merger::default_chunk_elements(backend)
  bool kernel_only = false;
  bool keep = false;
};

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Best of `repeats` runs: the figure least disturbed by other processes on a shared machine.
template <class F>
double best_of(int repeats, F&& f) {
  double best = 1e300;
  for (int r = 0; r < repeats; ++r) {
    const auto t = Clock::now();
    f();
    best = std::min(best, since(t));
  }
  return best;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Times each of `runs` once per round, `rounds` times, the order rotating from round to round so
// that drift in the machine's speed (other tenants, memory bandwidth) hits all of them alike.
// Returns the times [run][round].
std::vector<std::vector<double>> interleaved_rounds(int rounds, const std::vector<std::function<void()>>& runs) {
  std::vector<std::vector<double>> times(runs.size());
  for (int r = 0; r < rounds; ++r)
    for (std::size_t i = 0; i < runs.size(); ++i) {
      const std::size_t which = (i + std::size_t(r)) % runs.size();
      const auto t = Clock::now();
      runs[which]();
      times[which].push_back(since(t));
    }
  return times;
}

// "2.16x [2.01-2.30]": the median and range of the per-round ratios a/b, measured side by side.
std::string round_ratios(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> r;
  for (std::size_t i = 0; i < a.size(); ++i) r.push_back(a[i] / b[i]);
  const auto [lo, hi] = std::minmax_element(r.begin(), r.end());
  char buf[64];
  std::snprintf(buf, sizeof buf, "%5.2fx [%.2f-%.2f]", median(r), *lo, *hi);
  return buf;
}

// Random finite values in [-1, 1) in the given float dtype, fast enough for GBs.
void fill_random(std::span<std::byte> bytes, DType t, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  const std::size_t es = dtype_size(t), n = bytes.size() / es;
  for (std::size_t i = 0; i < n; ++i) {
    const float f = float(std::int64_t(rng() >> 11) - (std::int64_t(1) << 52)) / float(std::int64_t(1) << 52);
    std::byte* p = bytes.data() + i * es;
    std::uint16_t h;
    const double d = f;
    switch (t) {
      case DType::f16: h = f32_to_f16(f); std::memcpy(p, &h, 2); break;
      case DType::bf16: h = f32_to_bf16(f); std::memcpy(p, &h, 2); break;
      case DType::f64: std::memcpy(p, &d, 8); break;
      default: std::memcpy(p, &f, 4); break;
    }
  }
}

std::string gbps(double bytes, double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%7.2f GB/s", bytes / s / 1e9);
  return buf;
}

std::string cpu_model() {
  FILE* f = std::fopen("/proc/cpuinfo", "r");
  if (!f) return "unknown CPU";
  char line[512];
  std::string model = "unknown CPU";
  while (std::fgets(line, sizeof line, f))
    if (std::strncmp(line, "model name", 10) == 0) {
      model = std::strchr(line, ':') + 2;
      model.erase(model.find_last_not_of("\n ") + 1);
      break;
    }
  std::fclose(f);
  return model + ", " + std::to_string(sysconf(_SC_NPROCESSORS_ONLN)) + " threads";
}

// Writes K checkpoints of `bytes` each (8 float tensors and a step counter) into dir.
std::vector<fs::path> make_inputs(const fs::path& dir, int k, std::uint64_t bytes, DType t, const std::string& ext) {
  std::vector<fs::path> paths;
  const std::uint64_t per_tensor = std::max<std::uint64_t>(1, bytes / dtype_size(t) / 8);
  std::vector<TensorInfo> infos;
  for (int i = 0; i < 8; ++i) infos.push_back({"layer" + std::to_string(i) + ".weight", t, {std::int64_t(per_tensor)}});
  infos.push_back({"step_counter", DType::i64, {1}});
  std::vector<std::byte> buf(std::min<std::uint64_t>(per_tensor * dtype_size(t), 64u << 20));
  for (int j = 0; j < k; ++j) {
    CheckpointMeta meta;
    meta.step = 1000 * (j + 1);
    meta.run_id = "bench";
    paths.push_back(dir / ("ckpt-" + std::to_string(j) + ext));
    auto w = create_checkpoint(paths.back(), meta, infos);
    for (int i = 0; i < 8; ++i)
      for (std::uint64_t off = 0; off < infos[i].nbytes(); off += buf.size()) {
        const std::uint64_t n = std::min<std::uint64_t>(buf.size(), infos[i].nbytes() - off);
        fill_random({buf.data(), n}, t, std::uint64_t(j) * 1000 + i + off);
        w->write(infos[i].name, off, {buf.data(), n});
      }
    const std::int64_t step = *meta.step;
    w->write("step_counter", 0, std::as_bytes(std::span(&step, 1)));
    w->commit();
  }
  return paths;
}

// Reads every input through the readers (read(): a copy into one reused, cache-sized buffer) and
// writes `outputs` outputs of the same manifest, no compute: the I/O floor of a merge done the plain
// way (chunked, through the same formats, one thread).
void read_and_write(const std::vector<fs::path>& inputs, const std::vector<fs::path>& outs, std::uint64_t chunk_bytes) {
  std::vector<std::unique_ptr<CheckpointReader>> readers;
  for (const auto& p : inputs) readers.push_back(open_checkpoint(p));
  const auto& newest = *readers.back();
  std::vector<std::unique_ptr<CheckpointWriter>> writers;
  for (const auto& o : outs) writers.push_back(create_checkpoint(o, newest.meta(), newest.tensors()));
  std::vector<std::byte> buf(chunk_bytes);
  for (const auto& t : newest.tensors())
    for (std::uint64_t off = 0; off < t.nbytes(); off += chunk_bytes) {
      const std::uint64_t n = std::min(chunk_bytes, t.nbytes() - off);
      for (auto& r : readers) r->read(t.name, off, {buf.data(), n});
      for (auto& w : writers) w->write(t.name, off, {buf.data(), n});
    }
  for (auto& w : writers) w->commit();
}

void bench_ranks(const BenchArgs& a, DType t, merger::RankGroup& group);

void bench_files(const BenchArgs& a, DType t) {
  const auto group = merger::make_rank_group();
  if (group->size() > 1) return bench_ranks(a, t, *group);
  const auto bytes = std::uint64_t(a.size_mb * 1e6);
  const std::uint64_t chunk_elements = a.chunk_elements.value_or(merger::default_chunk_elements(kernels::parse_backend_kind(a.backend)));
  fs::path dir = fs::path(a.dir) / ("wsm-bench-" + std::to_string(getpid()));
  fs::create_directories(dir);
  struct Cleanup {
    fs::path dir;
    bool keep;
    ~Cleanup() {
      std::error_code ec;
      if (!keep) fs::remove_all(dir, ec);
    }
  } cleanup{dir, a.keep};

  const std::string ext = a.format == "h5" ? ".h5" : ".safetensors";
  std::printf(
      "wsm bench merge: %d inputs x %.0f MB %s (%s) in %s, backend %s, chunk %llu elements, %d interleaved rounds\n",
      a.inputs, a.size_mb, std::string(dtype_name(t)).c_str(), a.format.c_str(), dir.c_str(), a.backend.c_str(),
      static_cast<unsigned long long>(chunk_elements), a.repeats);
  std::printf("machine: %s\n", cpu_model().c_str());
  const auto inputs = make_inputs(dir, a.inputs, bytes, t, ext);
  std::uint64_t in_bytes = 0;
  for (const auto& p : inputs) in_bytes += fs::file_size(p);
  const double out_bytes = double(in_bytes) / a.inputs;

  auto out_paths = [&](std::size_t m) {
    std::vector<fs::path> outs;
    for (std::size_t o = 0; o < m; ++o) outs.push_back(dir / ("out-" + std::to_string(o) + ext));
    return outs;
  };
  auto merge = [&](std::vector<MergeSpec> specs) {
    merger::OfflineMergeRequest req;
    for (const auto& p : inputs) req.inputs.push_back(p);
    req.outputs = out_paths(specs.size());
    req.specs = std::move(specs);
    req.backend = kernels::parse_backend_kind(a.backend);
    req.chunk_elements = chunk_elements;
    merger::run_offline_merge(req);
  };
  auto spec = [](DecayShape s) { return MergeSpec(ShapeRule{s}); };
  const std::uint64_t io_chunk = chunk_elements * dtype_size(t);
  // Warm the page cache and the allocator once.
  read_and_write(inputs, out_paths(1), io_chunk);
  merge({spec(DecayShape::linear)});

  // memcpy of the bytes a single-output merge moves: K inputs in, one output out.
  const std::uint64_t block = 64u << 20;
  std::vector<std::byte> src(block, std::byte{1}), dst(block);
  const double total = double(in_bytes) + out_bytes, total3 = double(in_bytes) + 3 * out_bytes;
  enum { kMemcpy, kRw, kRw3, kM1, kM3 };
  const auto times = interleaved_rounds(
      a.repeats, {[&] {
                    for (double done = 0; done < total; done += double(block))
                      std::memcpy(dst.data(), src.data(), block);
                  },
                  [&] { read_and_write(inputs, out_paths(1), io_chunk); },
                  [&] { read_and_write(inputs, out_paths(3), io_chunk); }, [&] { merge({spec(DecayShape::linear)}); },
                  [&] {
                    merge({spec(DecayShape::linear), spec(DecayShape::one_minus_sqrt), spec(DecayShape::cosine)});
                  }});
  auto row = [&](const char* name, int which, double bytes, const std::string& ratio, const char* vs) {
    const double t_med = median(times[which]);
    std::printf("%-34s %8.3fs %s  %s  %s\n", name, t_med, gbps(bytes, t_med).c_str(), ratio.c_str(), vs);
  };
  auto more = [&](const std::string& ratio, const char* vs) { std::printf("%-57s  %s  %s\n", "", ratio.c_str(), vs); };

  std::printf("\n%-34s %9s %14s  %s\n", "", "time", "rate", "ratio: median of the rounds [range]");
  row("memcpy (same bytes)", kMemcpy, total, "", "");
  row("read K + write 1, no compute", kRw, total, round_ratios(times[kRw], times[kMemcpy]), "(vs memcpy)");
  row("read K + write 3, no compute", kRw3, total3, round_ratios(times[kRw3], times[kRw]), "(vs read K + write 1)");
  row("merge M=1 (linear)", kM1, total, round_ratios(times[kM1], times[kRw]), "(vs read+write; target <= 1.3)");
  more(round_ratios(times[kM1], times[kMemcpy]), "(vs memcpy; target <= 1.5)");
  row("merge M=3 (linear,1-sqrt,cosine)", kM3, total3, round_ratios(times[kM3], times[kM1]), "(vs M=1; target <= 1.3)");
  more(round_ratios(times[kM3], times[kRw3]), "(vs read K + write 3; target <= 1.1)");
  std::printf("rates count bytes read + bytes written. The merge reads mapped inputs in place; the\n"
              "read+write floor copies them through read(), as a tool that does not merge would.\n");
}

// The I/O floor of N ranks: each reads its 1/N of every input's bytes (read() into a cache-sized
// buffer) and writes its 1/N of one output file of the newest input's size, laid out by rank 0,
// with pwrite, then fsyncs: the bytes a distributed merge must move, without computing.
void rank_floor(merger::RankGroup& group, const std::vector<fs::path>& inputs, const fs::path& out, std::uint64_t chunk) {
  const std::uint64_t size = fs::file_size(inputs.back());
  std::string error;
  if (group.rank() == 0) {
    const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || ::ftruncate(fd, off_t(size)) != 0) error = out.string() + ": cannot create";
    if (fd >= 0) ::close(fd);
  }
  merger::agree_or_throw(group, error);
  const auto r = std::uint64_t(group.rank()), n = std::uint64_t(group.size());
  const std::uint64_t begin = size * r / n, end = size * (r + 1) / n;
  std::vector<std::byte> buf(chunk);
  const int out_fd = ::open(out.c_str(), O_WRONLY | O_CLOEXEC);
  std::vector<int> fds;
  for (const auto& p : inputs) fds.push_back(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
  for (std::uint64_t at = begin; at < end; at += chunk) {
    const std::size_t len = std::size_t(std::min(chunk, end - at));
    for (int fd : fds)
      if (::pread(fd, buf.data(), len, off_t(at)) < 0) error = "read failed";
    if (::pwrite(out_fd, buf.data(), len, off_t(at)) < 0) error = "write failed";
  }
  if (::fsync(out_fd) != 0) error = out.string() + ": fsync failed";
  for (int fd : fds) ::close(fd);
  ::close(out_fd);
  merger::agree_or_throw(group, error);
}

// Under mpirun -np N (N > 1): merge M=1 on 1 rank and on all N, and the read+write floor
// (rank_floor) on 1 and on N ranks, interleaved round by round, medians of the rounds; each timed on rank 0 between
// collective barriers. Every rank's own share rate (bytes moved / its engine time) is printed: the
// per-rank throughput docs/distributed-merge.md's cluster model starts from.
void bench_ranks(const BenchArgs& a, DType t, merger::RankGroup& group) {
  const bool root = group.rank() == 0;
  const auto bytes = std::uint64_t(a.size_mb * 1e6);
  const std::uint64_t chunk_elements = a.chunk_elements.value_or(merger::default_chunk_elements(kernels::parse_backend_kind(a.backend)));
  const std::string ext = a.format == "h5" ? ".h5" : ".safetensors";
  fs::path dir;
  std::vector<fs::path> inputs;
  std::string text;
  if (root) {
    dir = fs::path(a.dir) / ("wsm-bench-ranks-" + std::to_string(getpid()));
    fs::create_directories(dir);
    inputs = make_inputs(dir, a.inputs, bytes, t, ext);
    text = dir.string();
  }
  dir = group.broadcast(text);  // --dir must be on a filesystem every rank sees
  if (!root)
    for (int j = 0; j < a.inputs; ++j) inputs.push_back(dir / ("ckpt-" + std::to_string(j) + ext));
  const auto single = merger::make_single_rank_group();
  auto barrier = [&] { merger::agree_or_throw(group, ""); };
  auto timed = [&](auto&& f) {
    barrier();
    const auto t0 = Clock::now();
    f();
    barrier();
    return since(t0);
  };
  auto merge = [&](merger::RankGroup& g) {
    merger::OfflineMergeRequest req;
    req.inputs = inputs;
    req.outputs = {dir / ("merged" + ext)};
    req.specs = {MergeSpec(ShapeRule{DecayShape::linear})};
    req.backend = kernels::parse_backend_kind(a.backend);
    req.chunk_elements = chunk_elements;
    return merger::run_offline_merge(req, g);
  };
  const std::uint64_t io_chunk = chunk_elements * dtype_size(t);
  std::vector<double> floor1, floorn, merge1, mergen;
  std::vector<merger::RankStats> shares;
  const int n = group.size();
  for (int round = -1; round < a.repeats; ++round) {  // round -1 warms the page cache, not counted
    const double f1 = timed([&] {  // the same code as the N-rank floor, on rank 0 alone
      if (root) rank_floor(*single, inputs, dir / "floor.bin", io_chunk);
    });
    const double fn = timed([&] { rank_floor(group, inputs, dir / "floor.bin", io_chunk); });
    const double m1 = timed([&] {
      if (root) merge(*single);
    });
    double mn = timed([&] { shares = merge(group).ranks; });
    if (round < 0) continue;
    floor1.push_back(f1), floorn.push_back(fn), merge1.push_back(m1), mergen.push_back(mn);
  }
  if (root) {
    std::uint64_t in_bytes = 0;
    for (const auto& p : inputs) in_bytes += fs::file_size(p);
    const double total = double(in_bytes) + double(in_bytes) / a.inputs;
    std::printf("wsm bench merge under MPI: %d ranks, %d inputs x %.0f MB %s (%s) in %s, backend %s, "
                "%d rounds interleaved, medians\nmachine: %s\n\n",
                n, a.inputs, a.size_mb, std::string(dtype_name(t)).c_str(), a.format.c_str(), dir.c_str(),
                a.backend.c_str(), a.repeats, cpu_model().c_str());
    const double F1 = median(floor1), FN = median(floorn), M1 = median(merge1), MN = median(mergen);
    const std::string ranks = std::to_string(n) + " ranks";
    std::printf("%-36s %8s %14s\n", "", "time", "rate");
    std::printf("%-36s %7.3fs %s\n", "read K + write 1, 1 rank", F1, gbps(total, F1).c_str());
    std::printf("%-36s %7.3fs %s   %.2fx faster than 1 rank\n", ("read K + write 1, " + ranks).c_str(), FN,
                gbps(total, FN).c_str(), F1 / FN);
    std::printf("%-36s %7.3fs %s   %.2fx its floor\n", "merge M=1, 1 rank", M1, gbps(total, M1).c_str(), M1 / F1);
    std::printf("%-36s %7.3fs %s   %.2fx its floor, %.2fx faster than 1 rank\n", ("merge M=1, " + ranks).c_str(), MN,
                gbps(total, MN).c_str(), MN / FN, M1 / MN);
    std::printf("\nper rank, last round (its share, in its merge engine):\n");
    for (std::size_t r = 0; r < shares.size(); ++r) {
      const double moved = double(shares[r].bytes_read + shares[r].bytes_written);
      std::printf("  rank %zu: %.1f MB in %.3f s = %s\n", r, moved / 1e6, shares[r].seconds,
                  gbps(moved, shares[r].seconds).c_str());
    }
    std::printf("rounds (floor 1, floor %d, merge 1, merge %d):", n, n);
    for (std::size_t i = 0; i < merge1.size(); ++i)
      std::printf(" [%.3f %.3f %.3f %.3f]", floor1[i], floorn[i], merge1[i], mergen[i]);
    std::printf("\n");
    if (!a.keep) fs::remove_all(dir);
  }
}

void bench_kernel(const BenchArgs& a, DType t) {
  const std::size_t n = std::size_t(a.size_mb * 1e6) / dtype_size(t);
  const std::size_t k = std::size_t(a.inputs);
  std::printf("wsm bench merge --kernel-only: %zu inputs x %zu elements %s, in memory, best of %d\n", k, n,
              std::string(dtype_name(t)).c_str(), a.repeats);
  std::printf("machine: %s\n\n", cpu_model().c_str());
  std::vector<std::vector<std::byte>> in(k, std::vector<std::byte>(n * dtype_size(t)));
  for (std::size_t j = 0; j < k; ++j) fill_random(in[j], t, j);
  std::vector<std::vector<std::byte>> out(3, std::vector<std::byte>(n * dtype_size(t)));
  std::vector<kernels::MergeInput> mi;
  for (auto& b : in) mi.push_back({b.data(), t});
  auto backend = kernels::make_backend(kernels::parse_backend_kind(a.backend));
  auto run = [&](std::size_t m) {
    std::vector<kernels::MergeOutput> mo;
    for (std::size_t o = 0; o < m; ++o) mo.push_back({out[o].data(), t});
    std::vector<double> w(m * k, 1.0 / double(k));
    backend->merge({mi, w, mo, n, false});
  };
  run(1);
  const double b1 = double((k + 1) * n * dtype_size(t)), b3 = double((k + 3) * n * dtype_size(t));
  const double t1 = best_of(a.repeats, [&] { run(1); });
  const double t3 = best_of(a.repeats, [&] { run(3); });
  std::vector<std::byte> dst(n * dtype_size(t));
  const double mc = best_of(a.repeats, [&] {
    for (std::size_t j = 0; j < k; ++j) std::memcpy(dst.data(), in[j].data(), dst.size());
    std::memcpy(out[0].data(), dst.data(), dst.size());
  });
  std::printf("%-28s %8.4fs %s\n", "memcpy (K+1 buffers)", mc, gbps(b1, mc).c_str());
  std::printf("%-28s %8.4fs %s  %.2fx memcpy time\n", ("merge M=1 (" + backend->name() + ")").c_str(), t1,
              gbps(b1, t1).c_str(), t1 / mc);
  std::printf("%-28s %8.4fs %s  %.2fx M=1 time\n", ("merge M=3 (" + backend->name() + ")").c_str(), t3,
              gbps(b3, t3).c_str(), t3 / t1);
  if (kernels::cuda_available()) {
    for (int m : {1, 3}) {
      const auto c = kernels::cuda_kernel_bench({n, int(k), m, t, t, std::max(a.repeats, 5)});
      const double ref = c.bytes / c.memcpy_d2d_s;
      std::printf("\nCUDA %s, M=%d, device-resident:\n", c.device.c_str(), m);
      std::printf("  device memcpy D2D        %s\n", gbps(c.bytes, c.memcpy_d2d_s).c_str());
      std::printf("  fused kernel             %s  %.0f%% of D2D memcpy bandwidth\n", gbps(c.bytes, c.fused_s).c_str(),
                  100.0 * c.bytes / c.fused_s / ref);
      std::printf("  cuBLAS (widen+GemmEx+round) %s  %.0f%%\n", gbps(c.bytes, c.cublas_s).c_str(),
                  100.0 * c.bytes / c.cublas_s / ref);
    }
  } else {
    std::printf("(no CUDA device: CUDA kernels not timed)\n");
  }
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "Benchmarks: merge engine, daemon ingest");
  bench->require_subcommand(1);
  auto args = std::make_shared<BenchArgs>();
  auto* merge = bench->add_subcommand("merge", "Time merging K checkpoints (M=1, M=3) against read+write and memcpy");
  merge->add_option("--size-mb", args->size_mb, "Size of each input checkpoint in MB")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  merge->add_option("--inputs", args->inputs, "Number of input checkpoints K")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  merge->add_option("--dtype", args->dtype, "Tensor dtype of the inputs and outputs (f32, bf16, f16)")->capture_default_str();
  merge->add_option("--dir", args->dir, "Scratch directory for the files (page cache: /dev/shm or /tmp)")
      ->capture_default_str();
  merge->add_option("--backend", args->backend, "cpu, cuda, cublas or auto")
      ->check(CLI::IsMember({"cpu", "cuda", "cublas", "auto"}))
      ->capture_default_str();
  merge
      ->add_option("--repeats", args->repeats,
                   "Rounds: files mode times every measurement once per round, interleaved, and prints medians; "
                   "--kernel-only keeps the best of this many runs")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  merge->add_option("--format", args->format, "Checkpoint format of the scratch files")
      ->check(CLI::IsMember({"safetensors", "h5"}))
      ->capture_default_str();
  merge->add_option("--chunk-elements", args->chunk_elements,
                    "Elements per tensor chunk in the merge pipeline (default 262144 on the CPU, 16777216 on a GPU)")
      ->check(CLI::PositiveNumber);
  merge->add_flag("--kernel-only", args->kernel_only,
                  "Time the kernels on in-memory buffers (and CUDA on device memory when a GPU is present)");
  merge->add_flag("--keep", args->keep, "Keep the scratch files");
  merge->footer(
      "Examples:\n"
      "  wsm bench merge --size-mb 256 --inputs 8 --dtype bf16 --dir /dev/shm\n"
      "  wsm bench merge --kernel-only --size-mb 512 --inputs 8 --backend cpu\n"
      "  mpirun -np 2 wsm bench merge --size-mb 64 --inputs 8 --repeats 5   # 1 rank vs N ranks, and the floors");
  merge->callback([args] {
    const auto t = parse_dtype(args->dtype);
    if (!t || !is_float(*t)) throw Error("wsm bench merge: --dtype " + args->dtype + " is not a float dtype");
    if (args->kernel_only)
      bench_kernel(*args, *t);
    else
      bench_files(*args, *t);
  });
  add_bench_ingest_command(*bench);
}

}  // namespace wsm::tools
