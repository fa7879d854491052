// Fused attention (at::scaled_dot_product_attention) against the eager path
// it replaced (scores, float32 softmax, values): the same logits for a whole
// causal window, through the KV cache, with a sliding window, and in
// bfloat16 no further from float32 than the eager path is.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <nlohmann/json.hpp>

#include "jobs/model/checkpoint.hpp"
#include "jobs/model/llama_model.hpp"
#include "jobs/model/safetensors.hpp"
#include "unit/reference.hpp"

namespace qjobs::model {
namespace {
namespace fs = std::filesystem;

const fs::path kExample = fs::path(QJOBS_SOURCE_DIR) / "examples/kjv-llama";

LlamaModel load(const fs::path& dir, bool fused, at::ScalarType dtype = at::kFloat) {
  LoadOptions o;
  o.fused_attention = fused;
  o.dtype = dtype;
  return LlamaModel::load(Checkpoint::open(dir), o);
}

double rel(const at::Tensor& got, const at::Tensor& want) {
  return ((got.to(at::kFloat) - want.to(at::kFloat)).abs().max() / want.to(at::kFloat).abs().max()).item<double>();
}

at::Tensor token_ids(int64_t rows, int64_t len, int64_t vocab, uint64_t seed) {
  at::manual_seed(seed);
  return at::randint(vocab, {rows, len}, at::kLong);
}

// Whole window, then 20 tokens of prefill and one token at a time, each
// path against the eager one doing the same (not against the whole window:
// Phi-3's longrope picks its factors per call, as transformers does).
at::Tensor stepped(const LlamaModel& m, const at::Tensor& ids) {
  KVCache cache;
  std::vector<at::Tensor> parts = {m.forward(ids.narrow(1, 0, 20), &cache)};
  for (int64_t t = 20; t < ids.size(1); ++t) parts.push_back(m.forward(ids.narrow(1, t, 1), &cache));
  return at::cat(parts, 1);
}

void expect_fused_equals_eager(const fs::path& dir, const at::Tensor& ids, double tol) {
  at::NoGradGuard no_grad;
  const auto fused = load(dir, true), eager = load(dir, false);
  EXPECT_LE(rel(fused.forward(ids), eager.forward(ids)), tol) << dir << ": whole window";
  EXPECT_LE(rel(stepped(fused, ids), stepped(eager, ids)), tol) << dir << ": through the KV cache";
}

TEST(FusedAttention, ExampleModelEqualsEagerWholeAndThroughTheCache) {
  expect_fused_equals_eager(kExample, token_ids(3, 48, 1024, 1), 1e-5);
}

// The example model as Mistral with a 16-token sliding window: the fused
// call takes the band mask (and would differ from the eager path's if it
// ignored the window: checked by the plain causal model below).
TEST(FusedAttention, SlidingWindowEqualsEager) {
  const fs::path dir = fs::temp_directory_path() / ("qjobs_sdpa_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(kExample))
    fs::copy_file(e.path(), dir / e.path().filename(), fs::copy_options::overwrite_existing);
  auto cfg = nlohmann::json::parse(std::ifstream(kExample / "config.json"));
  cfg["model_type"] = "mistral";
  cfg["architectures"] = {"MistralForCausalLM"};
  cfg["sliding_window"] = 16;
  std::ofstream(dir / "config.json") << cfg.dump();
  const auto ids = token_ids(2, 48, 1024, 2);
  expect_fused_equals_eager(dir, ids, 1e-5);
  at::NoGradGuard no_grad;
  const auto windowed = load(dir, true).forward(ids), causal = load(kExample, true).forward(ids);
  EXPECT_LE(rel(windowed.narrow(1, 0, 16), causal.narrow(1, 0, 16)), 1e-6) << "inside the window nothing changes";
  EXPECT_GT(rel(windowed.narrow(1, 32, 16), causal.narrow(1, 32, 16)), 1e-3) << "past it the window must bite";
  fs::remove_all(dir);
}

// bfloat16 compute, float32 statistics: fused and eager both land near the
// float32 logits, the fused path no further than the eager one (x1.5).
TEST(FusedAttention, Bfloat16IsAsCloseToFloat32AsTheEagerPath) {
  at::NoGradGuard no_grad;
  const auto ids = token_ids(2, 64, 1024, 3);
  const auto ref = load(kExample, true).forward(ids);
  const auto bf16 = load(kExample, true, at::kBFloat16);
  EXPECT_EQ(bf16.dtype(), at::kBFloat16);
  const auto fused = bf16.forward(ids);
  const auto eager = load(kExample, false, at::kBFloat16).forward(ids);
  const double e_fused = rel(fused, ref), e_eager = rel(eager, ref);
  RecordProperty("bf16_fused_rel", std::to_string(e_fused));
  RecordProperty("bf16_eager_rel", std::to_string(e_eager));
  EXPECT_LE(e_fused, 0.05) << "bfloat16 logits, relative to float32";
  EXPECT_LE(e_fused, 1.5 * e_eager + 1e-3) << "fused " << e_fused << " vs eager " << e_eager;
}

// Every reference model, Gemma-2's soft-capped attention (which stays
// eager) and Phi-3's sliding window among them.
class FusedAttentionReference : public ::testing::TestWithParam<std::string> {};

TEST_P(FusedAttentionReference, EqualsEager) {
  QJOBS_REQUIRE_REFERENCE(ref);
  const auto dir = ref / GetParam();
  const auto expected = SafetensorsFile::open(dir / "expected.safetensors");
  const auto ids = expected.find("input_ids_long") ? expected.tensor("input_ids_long") : expected.tensor("input_ids");
  if (ids.size(1) <= 20) GTEST_SKIP() << "ids too short for the cache check";
  expect_fused_equals_eager(dir, ids, 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Models, FusedAttentionReference, ::qjobs::testing::reference_models(),
                         ::qjobs::testing::reference_model_name);

}  // namespace
}  // namespace qjobs::model
