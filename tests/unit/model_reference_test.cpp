// The forward pass against Hugging Face transformers' outputs in
// $QJOBS_REFERENCE_DIR/models, one fixture per model.
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>
#include <ATen/core/grad_mode.h>

#include "jobs/eval/perplexity.hpp"
#include "jobs/model/checkpoint.hpp"
#include "jobs/model/generate.hpp"
#include "jobs/model/llama_model.hpp"
#include "jobs/model/safetensors.hpp"
#include "unit/reference.hpp"

namespace qjobs::model {
namespace {

nlohmann::json read_json(const std::filesystem::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in);
}

class ModelReference : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelReference, LogitsMatchTransformers) {
  QJOBS_REQUIRE_REFERENCE(ref);
  const auto dir = ref / GetParam();
  const auto model = LlamaModel::load(Checkpoint::open(dir));
  const auto expected = SafetensorsFile::open(dir / "expected.safetensors");
  at::NoGradGuard no_grad;
  int sets = 0;
  for (const auto& [ids_name, logits_name] :
       std::vector<std::pair<std::string, std::string>>{{"input_ids", "logits"}, {"input_ids_long", "logits_long"}}) {
    if (!expected.find(ids_name)) continue;
    const auto want = expected.tensor(logits_name);
    const auto got = model.forward(expected.tensor(ids_name));
    ASSERT_EQ(got.sizes(), want.sizes());
    const double rel = ((got - want).abs().max() / want.abs().max()).item<double>();
    EXPECT_LE(rel, 1e-4) << GetParam() << " " << logits_name << ": max|diff|/max|ref| = " << rel;
    EXPECT_TRUE(at::equal(got.argmax(-1), want.argmax(-1)) ||
                (got.argmax(-1) != want.argmax(-1)).sum().item<int64_t>() <= 1)
        << "argmax differs beyond a near-tie";
    ++sets;
  }
  EXPECT_GE(sets, 1);
}

TEST_P(ModelReference, BatchedEqualsOneAtATimeAndCacheEqualsFullForward) {
  QJOBS_REQUIRE_REFERENCE(ref);
  const auto dir = ref / GetParam();
  const auto model = LlamaModel::load(Checkpoint::open(dir));
  const auto ids = SafetensorsFile::open(dir / "expected.safetensors").tensor("input_ids").narrow(1, 0, 40);
  at::NoGradGuard no_grad;
  const auto full = model.forward(ids);
  const auto row1 = model.forward(ids.narrow(0, 1, 1));
  // Relative to the logits' scale, as the cache check below: OpenBLAS on
  // some CPUs (AVX-512 EPYC) sums the rows of a batch in another order than
  // a single row, a few 1e-6 of max|logit| apart.
  const double batch_rel = (full.narrow(0, 1, 1) - row1).abs().max().item<double>() / full.abs().max().item<double>();
  EXPECT_LE(batch_rel, 1e-5) << GetParam() << ": batched vs one row, max|diff|/max|logit| = " << batch_rel;
  // Prefill 25 tokens, then one at a time with the KV cache.
  KVCache cache;
  std::vector<at::Tensor> parts = {model.forward(ids.narrow(1, 0, 25), &cache)};
  for (int64_t t = 25; t < 40; ++t) parts.push_back(model.forward(ids.narrow(1, t, 1), &cache));
  EXPECT_EQ(cache.length(), 40);
  const auto stepped = at::cat(parts, 1);
  EXPECT_LE((stepped - full).abs().max().item<double>() / full.abs().max().item<double>(), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Models, ModelReference, ::qjobs::testing::reference_models(),
                         ::qjobs::testing::reference_model_name);

TEST(ModelReferenceRope, Llama3InverseFrequencies) {
  QJOBS_REQUIRE_REFERENCE(ref);
  const auto dir = ref / "models/tiny-llama3";
  const auto cfg = ModelConfig::from_json(read_json(dir / "config.json"));
  const auto want = read_json(dir / "expected.json")["rope_inv_freq_float32"].get<std::vector<float>>();
  const auto got = rope_inverse_frequencies(cfg);
  ASSERT_EQ(got.numel(), static_cast<int64_t>(want.size()));
  for (std::size_t i = 0; i < want.size(); ++i)
    EXPECT_FLOAT_EQ(got[static_cast<int64_t>(i)].item<float>(), want[i]) << i;
}

TEST(ModelReferenceStories, GreedyContinuationIsIdentical) {
  QJOBS_REQUIRE_REFERENCE(ref);
  const auto dir = ref / "models/stories260K";
  const auto g = read_json(dir / "expected.json")["greedy"];
  const auto model = LlamaModel::load(Checkpoint::open(dir));
  GenerateOptions o;
  o.max_new_tokens = g["max_new_tokens"].get<int64_t>();
  const auto got = generate(model, g["prompt_ids"].get<std::vector<int64_t>>(), o);
  EXPECT_EQ(got, g["new_ids"].get<std::vector<int64_t>>());
}

class StoriesPerplexity : public ::testing::TestWithParam<int64_t> {};

TEST_P(StoriesPerplexity, WikiText2MatchesWithinOneThousandth) {
  QJOBS_REQUIRE_REFERENCE(ref);
  const auto dir = ref / "models/stories260K";
  const auto want = read_json(dir / "expected.json")["wikitext2"]["seqlen_" + std::to_string(GetParam())];
  const auto model = LlamaModel::load(Checkpoint::open(dir));
  const auto ids = SafetensorsFile::open(dir / "wikitext2_test_ids.safetensors").tensor("input_ids");
  eval::PerplexityOptions o;
  o.seqlen = GetParam();
  o.batch_size = 16;
  const auto r = eval::perplexity(model, ids, o);
  EXPECT_EQ(r.windows, want["windows"].get<int64_t>());
  EXPECT_EQ(r.tokens, want["tokens_total"].get<int64_t>());
  EXPECT_NEAR(r.ppl, want["ppl"].get<double>(), 1e-3 * want["ppl"].get<double>());
  RecordProperty("ppl", std::to_string(r.ppl));
}

INSTANTIATE_TEST_SUITE_P(Seqlen, StoriesPerplexity, ::testing::Values(256, 512));

}  // namespace
}  // namespace qjobs::model
