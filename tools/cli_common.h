#pragma once
// One convention for every `wsm` command's options, so a value means the same thing everywhere:
//   sizes      "5GB" = 5e9 bytes (SI: K, M, G, T = 10^3 .. 10^12, B optional), "5GiB" = 5 * 2^30
//              (IEC: Ki, Mi, Gi, Ti, B optional); a bare number is bytes (--shard-size,
//              --memory-budget, --write-backlog, --hdf5-chunk, --buffer)
//   sizes shown  human_bytes: IEC units ("1.50 GiB")
//   dtypes     --dtype takes a float dtype name (f32, f16, bf16, f64)
//   enums      one option per name table (the enum's own), choices listed in --help
//   windows    wsm/schedules/window.h ("800" steps, "50Mt" tokens, SPEC@WINDOW)
#include <CLI/CLI.hpp>
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "wsm/core/dtype.h"
#include "wsm/schedules/window.h"

namespace wsm::tools {

// Throws wsm::Error naming option and text ("--shard-size '5XB': unknown unit 'XB' ...").
std::uint64_t parse_size(std::string_view text, std::string_view option);
CLI::Option* add_size_option(CLI::App& cmd, const std::string& name, std::uint64_t& target,
                             const std::string& description);

std::string human_bytes(double bytes);  // "512 B", "1.50 KiB", "3.25 GiB"

// --dtype: empty when not given; anything but a float dtype is refused at parse time.
CLI::Option* add_float_dtype_option(CLI::App& cmd, std::optional<DType>& target, const std::string& description);

// A window option in one axis, written as wsm/schedules/window.h reads windows: --window-steps 2000;
// --window-tokens 50M, 50Mt or 50000000. A window in the other axis is a usage error.
CLI::Option* add_window_option(CLI::App& cmd, const std::string& name, std::optional<std::int64_t>& target, Axis axis,
                               const std::string& description);

// An option whose value is one name of `names` (the enum's own table), mapped to its value.
template <class E, std::size_t N>
CLI::Option* add_enum_option(CLI::App& cmd, const std::string& name, E& target,
                             const std::array<std::pair<std::string_view, E>, N>& names,
                             const std::string& description) {
  std::vector<std::pair<std::string, E>> table;
  for (const auto& [text, value] : names) table.emplace_back(text, value);
  return cmd.add_option(name, target, description)->transform(CLI::CheckedTransformer(table));
}

}  // namespace wsm::tools
