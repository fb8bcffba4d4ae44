#include "protocol/formats/torch_format.h"

#include <algorithm>
#include <array>
#include <fstream>
#include <vector>

namespace wsm {
namespace fs = std::filesystem;

std::optional<std::string> torch_save_format(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::array<unsigned char, 4> head{};
  if (!in.read(reinterpret_cast<char*>(head.data()), head.size())) return std::nullopt;
  if (head[0] == 'P' && head[1] == 'K' && head[2] == 3 && head[3] == 4) return "torch.save zip archive";
  // pickle's PROTO opcode (0x80) and a protocol torch.save writes (2 by default, up to 5).
  if (head[0] == 0x80 && head[1] >= 2 && head[1] <= 5) return "legacy torch.save pickle";
  return std::nullopt;
}

std::string torch_save_message(const fs::path& file, const std::string& format) {
  fs::path out = file;
  out.replace_extension(".safetensors");
  if (out == file) out += ".safetensors";
  return file.string() + ": a PyTorch " + format +
         " (torch.save: .pt, .pth, pytorch_model.bin), which wsm does not read: it is a pickle, and unpickling "
         "runs code. Convert it to safetensors first: python -m wsm_client.convert " +
         file.string() + " " + out.string();
}

std::optional<fs::path> torch_weights_in(const fs::path& dir) {
  std::vector<fs::path> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const auto ext = e.path().extension();
    if (e.is_regular_file(ec) && (ext == ".bin" || ext == ".pt" || ext == ".pth") && torch_save_format(e.path()))
      found.push_back(e.path());
  }
  if (found.empty()) return std::nullopt;
  // pytorch_model.bin (the model) before optimizer.pt, rng_state.pth, training_args.bin.
  std::sort(found.begin(), found.end(), [](const fs::path& a, const fs::path& b) {
    const bool am = a.filename().string().starts_with("pytorch_model"), bm = b.filename().string().starts_with("pytorch_model");
    return am != bm ? am : a < b;
  });
  return found.front();
}

}  // namespace wsm
