#pragma once
// Files written by torch.save (.pt, .pth, pytorch_model.bin) are pickles, which wsm does not read
// (unpickling runs code). They are recognised by their first bytes so the error names the format
// and the converter instead of failing as a malformed safetensors header.
#include <filesystem>
#include <optional>
#include <string>

namespace wsm {

// "torch.save zip archive" (PyTorch >= 1.6's default), "legacy torch.save pickle" (pickle
// protocol 2-5 stream), or empty when the file starts otherwise or cannot be read.
std::optional<std::string> torch_save_format(const std::filesystem::path& file);

// The error text for such a file: what it is, and the command that converts it to safetensors.
std::string torch_save_message(const std::filesystem::path& file, const std::string& format);

// In a directory that holds no safetensors: its torch.save weights file (pytorch_model.bin, *.pt,
// *.pth, *.bin), the first in name order, if any.
std::optional<std::filesystem::path> torch_weights_in(const std::filesystem::path& dir);

}  // namespace wsm
