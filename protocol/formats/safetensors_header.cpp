#include "wsm/formats/safetensors_header.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <set>
#include <utility>

#include <nlohmann/json.hpp>

#include "wsm/core/printable.h"

namespace wsm {

namespace {

using ojson = nlohmann::ordered_json;

constexpr std::array<std::pair<std::string_view, DType>, 13> kNames{{
    {"F32", DType::f32}, {"F16", DType::f16}, {"BF16", DType::bf16}, {"F64", DType::f64},
    {"I8", DType::i8},   {"I16", DType::i16}, {"I32", DType::i32},   {"I64", DType::i64},
    {"U8", DType::u8},   {"U16", DType::u16}, {"U32", DType::u32},   {"U64", DType::u64},
    {"BOOL", DType::boolean},
}};

constexpr std::string_view kStep = "wsm.step", kTokens = "wsm.tokens", kLr = "wsm.lr", kRunId = "wsm.run_id";

bool is_reserved(std::string_view key) {
  return key == kStep || key == kTokens || key == kLr || key == kRunId;
}

std::uint64_t read_u64_le(const std::byte* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | std::to_integer<std::uint64_t>(p[i]);
  return v;
}

// Non-negative JSON integer, or an error naming the field.
std::uint64_t as_u64(const ojson& v, const std::string& where, const std::string& what) {
  if (!v.is_number_unsigned()) throw Error(where + ": " + what + " must be a non-negative integer");
  return v.get<std::uint64_t>();
}

SafetensorsEntry parse_entry(const std::string& name, const ojson& v, const std::string& where) {
  const std::string at = where + ": tensor '" + printable(name) + "'";
  if (name.empty()) throw Error(where + ": empty tensor name");
  if (!v.is_object()) throw Error(at + ": entry is not an object");
  const auto dt = v.find("dtype");
  const auto sh = v.find("shape");
  const auto off = v.find("data_offsets");
  if (dt == v.end() || sh == v.end() || off == v.end())
    throw Error(at + ": entry needs dtype, shape and data_offsets");
  if (!dt->is_string()) throw Error(at + ": dtype is not a string");
  const auto dtype = parse_safetensors_dtype(dt->get_ref<const std::string&>());
  if (!dtype) throw Error(at + ": unknown dtype '" + printable(dt->get<std::string>()) + "'");
  if (!sh->is_array()) throw Error(at + ": shape is not an array");
  if (!off->is_array() || off->size() != 2) throw Error(at + ": data_offsets is not [begin, end]");

  SafetensorsEntry e;
  e.info.name = name;
  e.info.dtype = *dtype;
  std::uint64_t bytes = dtype_size(*dtype);
  for (const auto& d : *sh) {
    const std::uint64_t dim = as_u64(d, at, "shape entry");
    if (dim > std::uint64_t(INT64_MAX)) throw Error(at + ": shape entry too large");
    e.info.shape.push_back(static_cast<std::int64_t>(dim));
    if (dim != 0 && bytes > UINT64_MAX / dim) throw Error(at + ": shape overflows 64 bits");
    bytes *= dim;
  }
  e.begin = as_u64((*off)[0], at, "data_offsets begin");
  e.end = as_u64((*off)[1], at, "data_offsets end");
  if (e.end < e.begin) throw Error(at + ": data_offsets end before begin");
  if (e.end - e.begin != bytes)
    throw Error(at + ": data_offsets span " + std::to_string(e.end - e.begin) + " bytes but shape x dtype is " +
                std::to_string(bytes));
  return e;
}

std::string format_double(double v) {
  std::array<char, 64> buf{};
  const auto r = std::to_chars(buf.data(), buf.data() + buf.size(), v);  // shortest exact round trip
  return std::string(buf.data(), r.ptr);
}

template <typename T>
T parse_number(const std::string& s, const std::string& where, std::string_view key) {
  T v{};
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size())
    throw Error(where + ": metadata " + std::string(key) + "='" + printable(s) + "' is not a valid number");
  return v;
}

}  // namespace

std::string_view safetensors_dtype_name(DType t) {
  for (const auto& [name, type] : kNames)
    if (type == t) return name;
  return "?";
}

std::optional<DType> parse_safetensors_dtype(std::string_view name) {
  for (const auto& [n, type] : kNames)
    if (n == name) return type;
  return std::nullopt;
}

std::uint64_t safetensors_header_length(std::span<const std::byte> file_prefix, std::uint64_t file_size,
                                        const std::string& where) {
  if (file_size < 8 || file_prefix.size() < 8)
    throw Error(where + ": truncated safetensors file (" + std::to_string(file_size) +
                " bytes, the header length alone needs 8)");
  const std::uint64_t n = read_u64_le(file_prefix.data());
  if (n > kSafetensorsMaxHeader)
    throw Error(where + ": safetensors header length " + std::to_string(n) + " exceeds the limit of " +
                std::to_string(kSafetensorsMaxHeader) + " bytes (corrupt or not a safetensors file)");
  if (n > file_size - 8)
    throw Error(where + ": truncated safetensors file: header claims " + std::to_string(n) + " bytes but only " +
                std::to_string(file_size - 8) + " follow");
  return n;
}

SafetensorsHeader parse_safetensors_header(std::string_view json, std::uint64_t data_size, const std::string& where) {
  if (json.empty() || json.front() != '{') throw Error(where + ": safetensors header does not start with '{'");
  // nlohmann's parser stops at a NUL as if the input ended there, so "{...}\0garbage" would pass;
  // the format allows only JSON padded with spaces, and no JSON text holds a raw NUL.
  if (const auto nul = json.find('\0'); nul != std::string_view::npos)
    throw Error(where + ": NUL byte at offset " + std::to_string(nul) +
                " of the safetensors header (the header is JSON, padded with spaces only)");

  // nlohmann keeps the last of duplicate keys silently; a per-object key set catches them.
  std::vector<std::set<std::string>> keys;
  std::string duplicate;
  const ojson::parser_callback_t cb = [&](int, ojson::parse_event_t ev, ojson& parsed) {
    if (ev == ojson::parse_event_t::object_start) {
      keys.emplace_back();
    } else if (ev == ojson::parse_event_t::object_end) {
      if (!keys.empty()) keys.pop_back();
    } else if (ev == ojson::parse_event_t::key && !keys.empty()) {
      const auto& k = parsed.get_ref<const std::string&>();
      if (!keys.back().insert(k).second && duplicate.empty()) duplicate = k;
    }
    return true;
  };
  ojson doc;
  try {
    doc = ojson::parse(json.begin(), json.end(), cb);
  } catch (const ojson::exception& e) {
    throw Error(where + ": corrupt safetensors header: " + e.what());
  }
  if (!duplicate.empty()) throw Error(where + ": duplicate key '" + printable(duplicate) + "' in safetensors header");
  if (!doc.is_object()) throw Error(where + ": safetensors header is not a JSON object");

  SafetensorsHeader h;
  h.data_start = 8 + json.size();
  for (const auto& [key, value] : doc.items()) {
    if (key == "__metadata__") {
      if (value.is_null()) continue;
      if (!value.is_object()) throw Error(where + ": __metadata__ is not an object");
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string()) throw Error(where + ": __metadata__ value of '" + printable(mk) + "' is not a string");
        h.metadata[mk] = mv.get<std::string>();
      }
      continue;
    }
    h.tensors.push_back(parse_entry(key, value, where));
  }
  // Storage order; stable so zero-byte tensors keep their header order.
  std::stable_sort(h.tensors.begin(), h.tensors.end(),
                   [](const SafetensorsEntry& a, const SafetensorsEntry& b) { return a.begin < b.begin; });
  std::uint64_t expect = 0;
  for (const auto& e : h.tensors) {
    if (e.begin < expect)
      throw Error(where + ": tensor '" + printable(e.info.name) + "' overlaps the previous tensor (data_offsets begin " +
                  std::to_string(e.begin) + " < " + std::to_string(expect) + ")");
    if (e.begin > expect)
      throw Error(where + ": hole in the data before tensor '" + printable(e.info.name) + "' (bytes " + std::to_string(expect) +
                  ".." + std::to_string(e.begin) + " belong to no tensor)");
    if (e.end > data_size)
      throw Error(where + ": tensor '" + printable(e.info.name) + "' data_offsets end " + std::to_string(e.end) +
                  " lies past the data section (" + std::to_string(data_size) + " bytes): truncated or lying offsets");
    expect = e.end;
  }
  if (expect != data_size)
    throw Error(where + ": data section holds " + std::to_string(data_size) + " bytes but the tensors cover " +
                std::to_string(expect) + " (trailing garbage or missing tensors)");
  return h;
}

SafetensorsHeader parse_safetensors_file(std::span<const std::byte> file, const std::string& where) {
  const std::uint64_t n = safetensors_header_length(file, file.size(), where);
  const std::string_view json(reinterpret_cast<const char*>(file.data()) + 8, n);
  return parse_safetensors_header(json, file.size() - 8 - n, where);
}

std::string serialize_safetensors_header(const std::vector<TensorInfo>& tensors,
                                         const std::map<std::string, std::string>& metadata) {
  ojson doc = ojson::object();
  if (!metadata.empty()) {
    ojson m = ojson::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    doc["__metadata__"] = std::move(m);
  }
  std::uint64_t offset = 0;
  for (const auto& t : tensors) {
    if (t.name.empty()) throw Error("safetensors: empty tensor name");
    if (t.name == "__metadata__") throw Error("safetensors: tensor name '__metadata__' is reserved");
    if (doc.contains(t.name)) throw Error("safetensors: duplicate tensor name '" + t.name + "'");
    ojson shape = ojson::array();
    std::uint64_t bytes = dtype_size(t.dtype);
    for (auto d : t.shape) {
      if (d < 0) throw Error("safetensors: tensor '" + t.name + "' has a negative dimension");
      shape.push_back(static_cast<std::uint64_t>(d));
      bytes *= static_cast<std::uint64_t>(d);
    }
    doc[t.name] = {{"dtype", std::string(safetensors_dtype_name(t.dtype))},
                   {"shape", std::move(shape)},
                   {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string json = doc.dump();
  json.append((8 - (8 + json.size()) % 8) % 8, ' ');
  std::string out(8, '\0');
  std::uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + json;
}

std::map<std::string, std::string> meta_to_strings(const CheckpointMeta& meta) {
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : meta.extra) {
    if (is_reserved(k)) throw Error("metadata key '" + k + "' is reserved for wsm; use the CheckpointMeta field");
    if (k.empty()) throw Error("empty metadata key");
    out[k] = v;
  }
  if (!out.contains("format")) out["format"] = "pt";
  if (meta.step) out[std::string(kStep)] = std::to_string(*meta.step);
  if (meta.tokens) out[std::string(kTokens)] = std::to_string(*meta.tokens);
  if (meta.lr) out[std::string(kLr)] = format_double(*meta.lr);
  if (!meta.run_id.empty()) out[std::string(kRunId)] = meta.run_id;
  return out;
}

CheckpointMeta meta_from_strings(const std::map<std::string, std::string>& strings, const std::string& where) {
  CheckpointMeta m;
  for (const auto& [k, v] : strings) {
    if (k == kStep) m.step = parse_number<std::int64_t>(v, where, k);
    else if (k == kTokens) m.tokens = parse_number<std::int64_t>(v, where, k);
    else if (k == kLr) m.lr = parse_number<double>(v, where, k);
    else if (k == kRunId) m.run_id = v;
    else if (k == "format" && v == "pt") continue;
    else m.extra[k] = v;
  }
  return m;
}

}  // namespace wsm
