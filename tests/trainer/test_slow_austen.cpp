// The real thing, shortened: the `small` preset trained on Austen's five novels goes well below the
// unigram-entropy baseline on held-out Persuasion. The baseline is computed here from the data.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <filesystem>
#include <unistd.h>

#include "wsm/core/error.h"
#include "wsm/trainer/data.h"
#include "wsm/trainer/train.h"
#include "tools/corpus/austen.h"

namespace wsm::trainer {
namespace {

namespace fs = std::filesystem;

// Cross-entropy (nats) of val under the unigram byte distribution of train: the best a model that
// ignores context can do.
double unigram_cross_entropy(const std::string& train, const std::string& val) {
  std::array<double, 256> count{};
  for (unsigned char c : train) count[c] += 1;
  double h = 0;
  for (unsigned char c : val) h -= std::log(count[c] / double(train.size()));
  return h / double(val.size());
}

TEST(Austen, SmallPresetBeatsUnigramBaseline) {
  CorpusPaths corpus;
  const std::filesystem::path root = wsm::tools::austen_root();
  try {
    corpus = default_corpus(root);
  } catch (const wsm::Error& e) {
    GTEST_SKIP() << "Austen corpus unavailable (" << e.what() << ")";
  }
  const std::string train_text = read_text_file(corpus.train), val_text = read_text_file(corpus.val);
  const double unigram = unigram_cross_entropy(train_text, val_text);
  EXPECT_GT(unigram, 2.5);  // English characters: about 4.1-4.4 bits
  EXPECT_LT(unigram, 3.5);

  TrainOptions o;
  o.corpus_root = root;
  o.preset = "small";
  o.steps = 500;
  o.every = 100;
  o.batch_size = 8;
  o.schedule = "warmup=50,stable,peak=3e-3";
  o.out = fs::temp_directory_path() / ("wsm_austen_" + std::to_string(::getpid()));
  o.eval_positions = 32768;
  o.threads = 2;
  const TrainSummary s = train(o);
  std::printf("unigram baseline %.4f nats; small preset after %lld steps: val %.4f nats (%.3f bits/char)\n", unigram,
              (long long)s.step, s.val_loss, s.val_bpc);
  EXPECT_LT(s.val_loss, 0.8 * unigram) << "did not go well below the unigram baseline";
  fs::remove_all(o.out);
}

}  // namespace
}  // namespace wsm::trainer
