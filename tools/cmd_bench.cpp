// `wsm bench merge`: the merge engine's speed against the I/O it cannot avoid, measured side by side in
// one run (files in the page cache): merging K checkpoints into M = 1 and M = 3 outputs, reading the
// same K inputs and writing one output without computing, and memcpy of the same bytes. A kernel-only
// mode times the backends on in-memory buffers (and the CUDA kernels against device memcpy).
// `wsm bench ingest` is the daemon's (cmd_bench_ingest.cpp), registered here.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <random>

#include "wsm/kernels/cuda_bench.h"
#include "wsm/kernels/merge.h"
#include "wsm/merger/offline_merge.h"
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

void bench_files(const BenchArgs& a, DType t) {
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
  std::printf("wsm bench merge: %d inputs x %.0f MB %s (%s) in %s, backend %s, chunk %llu elements, best of %d\n",
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

  const double rw = best_of(a.repeats, [&] { read_and_write(inputs, out_paths(1), io_chunk); });
  const double rw3 = best_of(a.repeats, [&] { read_and_write(inputs, out_paths(3), io_chunk); });
  const double m1 = best_of(a.repeats, [&] { merge({spec(DecayShape::linear)}); });
  const double m3 = best_of(a.repeats, [&] {
    merge({spec(DecayShape::linear), spec(DecayShape::one_minus_sqrt), spec(DecayShape::cosine)});
  });
  // memcpy of the bytes a single-output merge moves: K inputs in, one output out.
  const std::uint64_t block = 64u << 20;
  std::vector<std::byte> src(block, std::byte{1}), dst(block);
  const double total = double(in_bytes) + out_bytes, total3 = double(in_bytes) + 3 * out_bytes;
  const double mc = best_of(a.repeats, [&] {
    for (double done = 0; done < total; done += double(block)) std::memcpy(dst.data(), src.data(), block);
  });

  std::printf("\n%-34s %9s %14s %10s\n", "", "time", "rate", "ratio");
  std::printf("%-34s %8.3fs %s %10s\n", "memcpy (same bytes)", mc, gbps(total, mc).c_str(), "");
  std::printf("%-34s %8.3fs %s %9.2fx  (vs memcpy)\n", "read K + write 1, no compute", rw, gbps(total, rw).c_str(), rw / mc);
  std::printf("%-34s %8.3fs %s %9.2fx  (vs read K + write 1)\n", "read K + write 3, no compute", rw3,
              gbps(total3, rw3).c_str(), rw3 / rw);
  std::printf("%-34s %8.3fs %s %9.2fx  (vs read+write; target <= 1.3)\n", "merge M=1 (linear)", m1, gbps(total, m1).c_str(), m1 / rw);
  std::printf("%-34s %8.3fs %s %9.2fx  (vs M=1; target <= 1.3)\n", "merge M=3 (linear,1-sqrt,cosine)", m3,
              gbps(total3, m3).c_str(), m3 / m1);
  std::printf("%-34s %9s %14s %9.2fx  (vs read K + write 3)\n", "", "", "", m3 / rw3);
  std::printf("rates count bytes read + bytes written. The merge reads mapped inputs in place; the\n"
              "read+write floor copies them through read(), as a tool that does not merge would.\n");
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
  merge->add_option("--repeats", args->repeats, "Runs per measurement (the best is kept)")
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
      "  wsm bench merge --kernel-only --size-mb 512 --inputs 8 --backend cpu");
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
