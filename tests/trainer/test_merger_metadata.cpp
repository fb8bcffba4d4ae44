// `wsm train --merger` outputs are self-contained (issue 16): the trainer sends its model config
// and vocabulary at Hello, and the daemon writes them into every merged output, so `wsm eval
// OUTPUT` scores a merged file alone, exactly as it scores it with a raw checkpoint on the line
// (the old way: config from the raw file). The output's metadata, read with h5py and from the
// safetensors header by Python, equals the raw checkpoint's model.* and data.vocab entries (written
// by the trainer's own save_model); a daemon restarted from --store still writes it.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "tests/merger/serve_test_util.h"
#include "tests/run_command.h"
#include "tests/synthetic_text.h"
#include "wsm/trainer/train.h"

namespace wsm::trainer {
namespace {

namespace fs = std::filesystem;

// The file's metadata that is not wsm's (wsm.* keys), as JSON, read by Python without wsm: h5py
// for HDF5; for safetensors, the header (8-byte length, JSON) or the safetensors package.
nlohmann::json python_metadata(const fs::path& file) {
  const fs::path script = file.parent_path() / "read_meta.py";
  std::ofstream(script) << R"(import json, struct, sys
path = sys.argv[1]
if path.endswith('.h5'):
    import h5py
    with h5py.File(path, 'r') as f:
        meta = {k: (v.decode() if isinstance(v, bytes) else str(v)) for k, v in f.attrs.items()}
else:
    try:
        from safetensors import safe_open
        with safe_open(path, 'np') as f:
            meta = f.metadata()
    except ImportError:
        with open(path, 'rb') as f:
            n = struct.unpack('<Q', f.read(8))[0]
            meta = json.loads(f.read(n))['__metadata__']
print(json.dumps({k: v for k, v in meta.items() if not k.startswith('wsm.') and k != 'format'}))
)";
  const auto r = test::run_command(std::string(WSM_PYTHON) + " '" + script.string() + "' '" + file.string() + "'");
  if (r.rc != 0) throw Error("read_meta.py failed: " + r.err);
  return nlohmann::json::parse(r.out);
}

// `wsm eval FILES --json`: the val_loss of each file, in order.
std::vector<double> eval_losses(const std::vector<fs::path>& files, const fs::path& val) {
  std::string args = "eval --json --positions 512 --threads 2 --val '" + val.string() + "'";
  for (const auto& f : files) args += " '" + f.string() + "'";
  const auto r = test::run_wsm(args);
  if (r.rc != 0) throw Error("wsm " + args + " failed: " + r.err);
  std::vector<double> losses;
  for (const auto& row : nlohmann::json::parse(r.out)) losses.push_back(row.at("val_loss").get<double>());
  return losses;
}

nlohmann::json newest_output(const fs::path& out) {
  std::ifstream in(out / "index.json");
  if (!in) return {};
  const auto idx = nlohmann::json::parse(in, nullptr, false);
  if (!idx.is_object() || idx["outputs"].empty()) return {};
  return idx["outputs"].back();
}

TEST(MergerMetadata, TrainerOutputsAreEvaluatedAloneAndKeepTheirMetadataAcrossARestart) {
  ASSERT_TRUE(fs::exists(test::wsm_binary()));
  const fs::path root = test::temp_dir("merger-meta");
  const fs::path data = root / "train.txt", val = root / "val.txt", out = root / "merged", store = root / "store";
  std::ofstream(data) << test::synthetic_text(20000);
  std::ofstream(val) << test::synthetic_text(3000).substr(1000);

  auto so = test::server_options(out, "linear@10", 5);
  so.core.store.store_dir = store;
  auto server = std::make_unique<test::ServerThread>(so);
  TrainOptions o;
  o.preset = "tiny";
  o.steps = 20;
  o.every = 5;
  o.out = root / "train";
  o.data = data;
  o.val = val;
  o.threads = 2;
  o.eval_positions = 0;
  o.merger = server->endpoint();
  o.run_id = "meta";
  train(o);  // returns once every checkpoint is acknowledged (flush)
  nlohmann::json rec;
  ASSERT_TRUE(test::wait_for([&] { return (rec = newest_output(out)).is_object() && rec["step"] == 20; }, 30000));
  const fs::path merged = rec["path"].get<std::string>();
  const fs::path raw = o.out / "step_000000000020.h5";
  ASSERT_TRUE(fs::exists(merged) && fs::exists(raw));

  // The reference: the trainer's own checkpoint file's model config and vocabulary.
  nlohmann::json expected = nlohmann::json::object();
  const auto raw_metadata = python_metadata(raw);
  for (const auto& [key, value] : raw_metadata.items())
    if (key.starts_with("model.") || key == "data.vocab") expected[key] = value;
  ASSERT_EQ(expected.size(), 7u) << expected.dump();  // arch, vocab_size, block_size, n_layer, n_head, n_embd, vocab
  EXPECT_EQ(python_metadata(merged), expected);

  // Scored alone, and the same as with the raw file lending its config.
  const auto alone = eval_losses({merged}, val);
  const auto beside_raw = eval_losses({raw, merged}, val);
  ASSERT_EQ(alone.size(), 1u);
  EXPECT_TRUE(std::isfinite(alone[0]) && alone[0] > 0);
  EXPECT_EQ(alone[0], beside_raw[1]);

  // A daemon restarted from --store (safetensors outputs now) writes it from the stored files: a
  // merge request needs no Hello, so nothing else could bring it.
  server->stop();
  server.reset();
  so.core.output.format = merger::OutputFormat::safetensors;
  server = std::make_unique<test::ServerThread>(so);
  test::RawPeer peer(server->endpoint());
  peer.send(test::merge_request(1, "meta", "1-sqrt", "10"));
  const auto reply = peer.next(30000);
  ASSERT_TRUE(reply && reply->has_merge_reply()) << (reply ? reply->DebugString() : "timeout");
  const fs::path restarted = reply->merge_reply().path();
  EXPECT_EQ(restarted.extension(), ".safetensors");
  EXPECT_EQ(python_metadata(restarted), expected);
  const auto restarted_loss = eval_losses({restarted}, val);
  EXPECT_TRUE(std::isfinite(restarted_loss[0]) && restarted_loss[0] > 0);
  server->stop();
  fs::remove_all(root);
}

}  // namespace
}  // namespace wsm::trainer
