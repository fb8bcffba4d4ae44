#include "wsm/formats/tensor_convert.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include <spdlog/spdlog.h>

namespace wsm {

namespace {

template <typename T>
T load(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Element as double (exact for every float dtype).
template <DType D>
double get(const std::byte* p) {
  if constexpr (D == DType::f32) return load<float>(p);
  else if constexpr (D == DType::f64) return load<double>(p);
  else if constexpr (D == DType::f16) return f16_to_f32(load<std::uint16_t>(p));
  else return bf16_to_f32(load<std::uint16_t>(p));
}

template <DType D>
void put(std::byte* p, double v) {
  if constexpr (D == DType::f64) {
    std::memcpy(p, &v, 8);
  } else {
    const float f = static_cast<float>(v);  // round to nearest even
    if constexpr (D == DType::f32) {
      std::memcpy(p, &f, 4);
    } else {
      const std::uint16_t h = D == DType::f16 ? f32_to_f16(f) : f32_to_bf16(f);
      std::memcpy(p, &h, 2);
    }
  }
}

template <DType From, DType To>
std::uint64_t cast_loop(const std::byte* src, std::byte* dst, std::size_t n) {
  constexpr std::size_t si = From == DType::f64 ? 8 : From == DType::f32 ? 4 : 2;
  constexpr std::size_t so = To == DType::f64 ? 8 : To == DType::f32 ? 4 : 2;
  std::uint64_t overflow = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double v = get<From>(src + i * si);
    put<To>(dst + i * so, v);
    if (std::isfinite(v) && !std::isfinite(get<To>(dst + i * so))) ++overflow;
  }
  return overflow;
}

template <DType From>
std::uint64_t cast_from(DType to, const std::byte* src, std::byte* dst, std::size_t n) {
  switch (to) {
    case DType::f32: return cast_loop<From, DType::f32>(src, dst, n);
    case DType::f64: return cast_loop<From, DType::f64>(src, dst, n);
    case DType::f16: return cast_loop<From, DType::f16>(src, dst, n);
    case DType::bf16: return cast_loop<From, DType::bf16>(src, dst, n);
    default: throw Error("cast to a non-float dtype");
  }
}

// NaN and Inf are the values whose exponent bits are all set; as signed integers the masked bits
// are non-negative (the sign bit is outside the mask), so one min over a block vectorizes.
template <DType D>
using BitsOf =
    std::conditional_t<D == DType::f64, std::int64_t, std::conditional_t<D == DType::f32, std::int32_t, std::int16_t>>;
template <DType D>
constexpr BitsOf<D> exponent_mask() {
  if constexpr (D == DType::f64)
    return 0x7ff0000000000000;
  else if constexpr (D == DType::f32)
    return 0x7f800000;
  else if constexpr (D == DType::f16)
    return 0x7c00;
  else
    return 0x7f80;
}

// Whether some element of the n at p is NaN or Inf: branch-free, so the compiler vectorizes it.
template <DType D>
bool any_nonfinite(const std::byte* p, std::size_t n) {
  using Int = BitsOf<D>;
  constexpr Int mask = exponent_mask<D>();
  Int least = mask;
  for (std::size_t i = 0; i < n; ++i) least = std::min(least, Int((load<Int>(p + i * sizeof(Int)) & mask) ^ mask));
  return least == 0;
}

// Merge outputs are scanned chunk by chunk on the writer's path: blocks are tested with
// any_nonfinite and only a block that holds a NaN/Inf is counted element by element.
template <DType D>
FiniteScan scan_loop(std::span<const std::byte> data, std::uint64_t first_index) {
  constexpr std::size_t es = sizeof(BitsOf<D>);
  constexpr std::size_t block = 4096;
  FiniteScan s;
  const std::size_t n = data.size() / es;
  for (std::size_t b = 0; b < n; b += block) {
    const std::size_t end = std::min(n, b + block);
    if (!any_nonfinite<D>(data.data() + b * es, end - b)) continue;
    for (std::size_t i = b; i < end; ++i) {
      const double v = get<D>(data.data() + i * es);
      if (std::isfinite(v)) continue;
      if (std::isnan(v))
        ++s.nan;
      else
        ++s.inf;
      if (!s.first_bad) s.first_bad = first_index + i;
    }
  }
  return s;
}

}  // namespace

void add_scan(FiniteScan& into, const FiniteScan& more) {
  into.nan += more.nan;
  into.inf += more.inf;
  if (more.first_bad && (!into.first_bad || *more.first_bad < *into.first_bad)) into.first_bad = more.first_bad;
}

std::string describe_nonfinite(const FiniteScan& s) {
  return std::to_string(s.nan) + " NaN and " + std::to_string(s.inf) + " Inf (first at element " +
         std::to_string(s.first_bad.value_or(0)) + ")";
}

FiniteScan scan_nonfinite(DType t, std::span<const std::byte> data, std::uint64_t first_index) {
  switch (t) {
    case DType::f32: return scan_loop<DType::f32>(data, first_index);
    case DType::f64: return scan_loop<DType::f64>(data, first_index);
    case DType::f16: return scan_loop<DType::f16>(data, first_index);
    case DType::bf16: return scan_loop<DType::bf16>(data, first_index);
    default: return {};
  }
}

FiniteScan scan_tensor(CheckpointReader& reader, const TensorInfo& info, std::uint64_t chunk_bytes) {
  FiniteScan total;
  if (!is_float(info.dtype)) return total;
  const std::uint64_t es = dtype_size(info.dtype);
  const std::uint64_t step = std::max<std::uint64_t>(1, chunk_bytes / es) * es;
  const std::uint64_t nbytes = info.nbytes();
  std::vector<std::byte> buf(std::min(step, nbytes));
  for (std::uint64_t off = 0; off < nbytes; off += step) {
    const std::span<std::byte> chunk(buf.data(), std::min(step, nbytes - off));
    reader.read(info.name, off, chunk);
    add_scan(total, scan_nonfinite(info.dtype, chunk, off / es));
  }
  return total;
}

std::uint64_t cast_elements(DType from, std::span<const std::byte> src, DType to, std::span<std::byte> dst) {
  if (!is_float(from) || !is_float(to)) {
    if (from != to)
      throw Error("cannot cast " + std::string(dtype_name(from)) + " to " + std::string(dtype_name(to)) +
                  ": wsm never casts integer or bool tensors");
  }
  const std::size_t n = src.size() / dtype_size(from);
  if (src.size() % dtype_size(from) != 0 || dst.size() != n * dtype_size(to))
    throw Error("cast_elements: buffer sizes do not match whole elements");
  if (from == to) {
    if (!src.empty()) std::memcpy(dst.data(), src.data(), src.size());
    return 0;
  }
  switch (from) {
    case DType::f32: return cast_from<DType::f32>(to, src.data(), dst.data(), n);
    case DType::f64: return cast_from<DType::f64>(to, src.data(), dst.data(), n);
    case DType::f16: return cast_from<DType::f16>(to, src.data(), dst.data(), n);
    case DType::bf16: return cast_from<DType::bf16>(to, src.data(), dst.data(), n);
    default: throw Error("cast from a non-float dtype");
  }
}

ConvertReport convert_checkpoint(const std::filesystem::path& in, const std::filesystem::path& out,
                                 const ConvertOptions& options) {
  auto reader = open_checkpoint(in);
  return convert_checkpoint(*reader, out, options);
}

ConvertReport convert_checkpoint(CheckpointReader& rd, const std::filesystem::path& out,
                                 const ConvertOptions& options) {
  CheckpointReader* reader = &rd;
  const std::filesystem::path& in = rd.path();
  ConvertReport report;
  report.in_format = reader->format();
  std::vector<TensorInfo> out_infos = reader->tensors();
  for (auto& t : out_infos)
    if (options.dtype && is_float(t.dtype)) t.dtype = *options.dtype;
  if (options.dtype && !is_float(*options.dtype))
    throw Error("--dtype must be a float type (f32, f16, bf16, f64), not " + std::string(dtype_name(*options.dtype)));

  auto writer = create_checkpoint(out, reader->meta(), out_infos, options.write);
  std::vector<std::byte> src_buf, dst_buf;  // reused: never more than one chunk each
  for (std::size_t k = 0; k < out_infos.size(); ++k) {
    const TensorInfo& ti = reader->tensors()[k];
    const TensorInfo& to = out_infos[k];
    const std::uint64_t es_in = dtype_size(ti.dtype), es_out = dtype_size(to.dtype);
    const std::uint64_t per_chunk = std::max<std::uint64_t>(1, options.chunk_bytes / std::max(es_in, es_out));
    const std::uint64_t numel = ti.numel();
    ConvertIssue issue{ti.name, {}, 0};
    for (std::uint64_t e = 0; e < numel; e += per_chunk) {
      const std::uint64_t n = std::min(per_chunk, numel - e);
      src_buf.resize(n * es_in);
      reader->read(ti.name, e * es_in, src_buf);
      add_scan(issue.scan, scan_nonfinite(ti.dtype, src_buf, e));
      if (ti.dtype == to.dtype) {
        writer->write(to.name, e * es_out, src_buf);
      } else {
        dst_buf.resize(n * es_out);
        issue.overflow += cast_elements(ti.dtype, src_buf, to.dtype, dst_buf);
        writer->write(to.name, e * es_out, dst_buf);
      }
    }
    report.bytes_in += ti.nbytes();
    report.bytes_out += to.nbytes();
    ++report.tensors;
    if (!issue.scan.clean()) {
      const std::string msg = in.string() + ": tensor '" + ti.name + "' holds " + describe_nonfinite(issue.scan);
      if (options.fail_on_nonfinite) throw Error(msg);
      spdlog::warn("{} (copied unchanged)", msg);
    }
    if (issue.overflow > 0)
      spdlog::warn("{}: tensor '{}': {} finite values overflow {} and became inf", in.string(), ti.name,
                   issue.overflow, dtype_name(to.dtype));
    if (!issue.scan.clean() || issue.overflow > 0) report.issues.push_back(std::move(issue));
  }
  writer->commit();
  return report;
}

}  // namespace wsm
