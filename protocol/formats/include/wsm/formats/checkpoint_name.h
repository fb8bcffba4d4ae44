#pragma once
// One naming rule for checkpoint files wsm writes (the trainer's run folder, the daemon's store and
// its merged outputs): step_<step, 12 digits>.<ext>, so names sort by step as text up to step
// 10^12. Older names (the trainer's 8 digits, any width) are still read.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace wsm {

// "step_000000000600.h5" for (600, ".h5"). Throws wsm::Error on a negative step.
std::string checkpoint_file_name(std::int64_t step, std::string_view extension = ".h5");

// The step in a name checkpoint_file_name wrote, at any zero-padded width ("step_00000600.h5",
// "step_600.safetensors"); empty for any other name.
std::optional<std::int64_t> step_from_file_name(const std::filesystem::path& path);

}  // namespace wsm
