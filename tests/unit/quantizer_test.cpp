// The RTN quantizer against a hand-computed case and against the reference
// tensors in $QJOBS_REFERENCE_DIR/quant (made with PyTorch, bit for bit).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "jobs/model/checkpoint.hpp"
#include "jobs/model/llama_model.hpp"
#include "jobs/model/safetensors.hpp"
#include "jobs/quant/quantizer.hpp"
#include "unit/reference.hpp"

namespace qjobs::quant {
namespace {

TEST(Quantizer, HandComputedAsymmetricGroup) {
  // One row, one group of 4, 2 bits: min -1, max 2, scale = 3/3 = 1,
  // zero = round(1) = 1; codes = round(w) + 1 clamped to [0,3].
  const auto w = at::tensor({-1.0f, 0.4f, 0.6f, 2.0f}).reshape({1, 4});
  const auto q = quantize_weight(w, {2, 4, true});
  EXPECT_EQ(q.scales.item<float>(), 1.0f);
  EXPECT_EQ(q.zeros.item<int>(), 1);
  const auto codes = q.codes.flatten();
  EXPECT_EQ(codes[0].item<int>(), 0);
  EXPECT_EQ(codes[1].item<int>(), 1);
  EXPECT_EQ(codes[2].item<int>(), 2);
  EXPECT_EQ(codes[3].item<int>(), 3);
  const auto d = q.dequantize().flatten();
  EXPECT_EQ(d[1].item<float>(), 0.0f);
  EXPECT_EQ(d[2].item<float>(), 1.0f);
}

TEST(Quantizer, HalfRoundsToEven) {
  // Symmetric 3 bits: absmax 3 -> scale 1; 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -0.5 -> 0.
  const auto w = at::tensor({0.5f, 1.5f, 2.5f, -0.5f, 3.0f}).reshape({1, 5});
  const auto q = quantize_weight(w, {3, -1, false});
  const auto c = q.codes.flatten();
  EXPECT_EQ(c[0].item<int>(), 0);
  EXPECT_EQ(c[1].item<int>(), 2);
  EXPECT_EQ(c[2].item<int>(), 2);
  EXPECT_EQ(c[3].item<int>(), 0);
  EXPECT_EQ(c[4].item<int>(), 3);
  EXPECT_FALSE(q.zeros.defined());
}

TEST(Quantizer, ShortLastGroupHasItsOwnScale) {
  // Groups of 4 over 10 columns: the third group holds {3, -3} only.
  // Its scale is (3 - -3) / 15 = 0.4; zero = round(7.5) = 8 (half to even);
  // 3 / 0.4 = 7.5 -> 8, + 8 = 16, clamped to 15 -> (15 - 8) * 0.4 = 2.8;
  // -3 / 0.4 = -7.5 -> -8, + 8 = 0 -> -3.2.
  const auto w = at::tensor({-1.0f, 1.0f, -2.0f, 2.0f, -0.5f, 0.5f, 0.25f, -0.25f, 3.0f, -3.0f}).reshape({1, 10});
  const auto q = quantize_weight(w, {4, 4, true});
  ASSERT_EQ(q.scales.size(1), 3);
  EXPECT_FLOAT_EQ(q.scales[0][2].item<float>(), 6.0f / 15.0f);
  EXPECT_EQ(q.zeros[0][2].item<int>(), 8);
  EXPECT_EQ(q.codes[0][8].item<int>(), 15);
  EXPECT_EQ(q.codes[0][9].item<int>(), 0);
  const auto d = q.dequantize();
  EXPECT_FLOAT_EQ(d[0][8].item<float>(), 7 * 0.4f);
  EXPECT_FLOAT_EQ(d[0][9].item<float>(), -8 * 0.4f);
  // Groups 0 and 1 have their own, smaller scales.
  EXPECT_FLOAT_EQ(q.scales[0][0].item<float>(), 4.0f / 15.0f);
  EXPECT_FLOAT_EQ(q.scales[0][1].item<float>(), 1.0f / 15.0f);
}

TEST(Quantizer, FakeQuantizeIsDequantizedQuantizationBitForBit) {
  // The hand-computed short last group above, without codes.
  const auto h = at::tensor({-1.0f, 1.0f, -2.0f, 2.0f, -0.5f, 0.5f, 0.25f, -0.25f, 3.0f, -3.0f}).reshape({1, 10});
  const auto hd = fake_quantize(h, {4, 4, true});
  EXPECT_FLOAT_EQ(hd[0][8].item<float>(), 7 * 0.4f);
  EXPECT_FLOAT_EQ(hd[0][9].item<float>(), -8 * 0.4f);
  EXPECT_TRUE(h.equal(at::tensor({-1.0f, 1.0f, -2.0f, 2.0f, -0.5f, 0.5f, 0.25f, -0.25f, 3.0f, -3.0f}).reshape({1, 10})))
      << "the input was changed";
  // Every range convention, with and without zero points, full groups,
  // a short last group, one group per row; an all-zero row and exact
  // halves (w = k / 2 on a grid of 1) for the rounding; bf16 in, bf16 out.
  at::manual_seed(7);
  auto w = at::randn({24, 200});
  w[3].zero_();
  w[5] = at::arange(200, at::kFloat).sub(100).div(2);
  for (const auto range : {RangeMode::min_max, RangeMode::through_zero}) {
    for (const bool zp : {true, false}) {
      for (const int64_t g : {int64_t{32}, int64_t{64}, int64_t{-1}, int64_t{200}, int64_t{512}}) {
        for (const int bits : {2, 3, 4, 8}) {
          const WeightQuantConfig cfg{bits, g, zp, range};
          const auto want = quantize_weight(w, cfg).dequantize();
          EXPECT_TRUE(at::equal(fake_quantize(w, cfg), want)) << "g " << g << " bits " << bits << " zp " << zp;
          auto inplace = w.clone();
          EXPECT_TRUE(at::equal(fake_quantize_(inplace, cfg), want));
          const auto wb = w.to(at::kBFloat16);
          const auto fb = fake_quantize(wb, cfg);
          EXPECT_EQ(fb.scalar_type(), at::kBFloat16);
          EXPECT_TRUE(at::equal(fb, quantize_weight(wb, cfg).dequantize().to(at::kBFloat16)));
        }
      }
    }
  }
  auto non_float = w.to(at::kDouble);
  EXPECT_THROW(fake_quantize_(non_float, {4, 32, true}), Error);
}

struct RtnCase {
  std::string file;
  WeightQuantConfig cfg;
};

class RtnReference : public ::testing::TestWithParam<RtnCase> {};

TEST_P(RtnReference, MatchesBitForBit) {
  QJOBS_REQUIRE_REFERENCE(ref);
  const auto& c = GetParam();
  const auto model = model::SafetensorsFile::open(ref / "models/stories260K/model.safetensors");
  const auto expected = model::SafetensorsFile::open(ref / "quant" / c.file);
  for (const std::string p : {"model.layers.0.self_attn.q_proj", "model.layers.0.mlp.down_proj"}) {
    const auto w = model.tensor(p + ".weight");
    const auto q = quantize_weight(w, c.cfg);
    const auto want = expected.tensor(p + ".weight");
    const auto got = q.dequantize();
    EXPECT_TRUE(at::equal(got, want)) << p << " max |diff| " << (got - want).abs().max().item<float>();
    EXPECT_TRUE(at::equal(fake_quantize(w, c.cfg), want)) << p << ": fake_quantize";
    EXPECT_TRUE(at::equal(q.codes, expected.tensor(p + ".qweight").to(at::kInt))) << p;
    EXPECT_TRUE(at::equal(q.scales, expected.tensor(p + ".scale"))) << p;
    if (c.cfg.zero_point) {
      EXPECT_TRUE(at::equal(q.zeros, expected.tensor(p + ".zero").to(at::kInt))) << p;
    }
  }
}

TEST_P(RtnReference, ErrorStatisticsOverAllLayers) {
  QJOBS_REQUIRE_REFERENCE(ref);
  const auto& c = GetParam();
  std::ifstream in(ref / "quant/expected.json");
  const auto expected = nlohmann::json::parse(in);
  const std::string scheme = c.file == "rtn_int4_g32.safetensors"   ? "rtn_int4_asym_g32"
                             : c.file == "rtn_int3_g32.safetensors" ? "rtn_int3_asym_g32"
                                                                    : "rtn_int8_sym_per_channel";
  const auto ckpt = model::Checkpoint::open(ref / "models/stories260K");
  double sum_sq = 0, max_abs = 0, norm_sq = 0;
  int n = 0;
  for (const auto& name : model::quantized_linear_weights(model::ModelConfig::from_json(ckpt.config()))) {
    const auto w = ckpt.tensor(name).to(at::kDouble);
    const auto d = quantize_weight(ckpt.tensor(name), c.cfg).dequantize().to(at::kDouble) - w;
    sum_sq += d.pow(2).sum().item<double>();
    norm_sq += w.pow(2).sum().item<double>();
    max_abs = std::max(max_abs, d.abs().max().item<double>());
    ++n;
  }
  EXPECT_EQ(n, 35);
  const auto& e = expected["schemes"][scheme];
  EXPECT_NEAR(sum_sq, e["sum_sq_err"].get<double>(), 1e-9 * e["sum_sq_err"].get<double>());
  EXPECT_NEAR(max_abs, e["max_abs_err"].get<double>(), 1e-7);
  EXPECT_NEAR(std::sqrt(sum_sq / norm_sq), e["rel_fro_err"].get<double>(), 1e-9);
}

INSTANTIATE_TEST_SUITE_P(Schemes, RtnReference,
                         ::testing::Values(RtnCase{"rtn_int4_g32.safetensors", {4, 32, true}},
                                           RtnCase{"rtn_int3_g32.safetensors", {3, 32, true}},
                                           RtnCase{"rtn_int8_per_channel.safetensors", {8, -1, false}}),
                         [](const auto& info) { return info.param.file.substr(0, info.param.file.find('.')); });

}  // namespace
}  // namespace qjobs::quant

#include "jobs/eval/perplexity.hpp"
#include "jobs/model/llama_model.hpp"

namespace qjobs::quant {
namespace {

TEST_P(RtnReference, PerplexityWithinOneThousandth) {
  QJOBS_REQUIRE_REFERENCE(ref);
  const auto& c = GetParam();
  std::ifstream in(ref / "quant/expected.json");
  const auto expected = nlohmann::json::parse(in);
  const std::string scheme = c.file == "rtn_int4_g32.safetensors"   ? "rtn_int4_asym_g32"
                             : c.file == "rtn_int3_g32.safetensors" ? "rtn_int3_asym_g32"
                                                                    : "rtn_int8_sym_per_channel";
  const auto dir = ref / "models/stories260K";
  auto m = model::LlamaModel::load(model::Checkpoint::open(dir));
  for (auto& layer : m.layers())
    for (auto& [name, lin] : layer.linears()) lin->weight = quantize_weight(lin->weight, c.cfg).dequantize();
  eval::PerplexityOptions o;
  o.seqlen = 512;
  o.batch_size = 16;
  const auto r =
      eval::perplexity(m, model::SafetensorsFile::open(dir / "wikitext2_test_ids.safetensors").tensor("input_ids"), o);
  const double want = expected["schemes"][scheme]["ppl"];
  EXPECT_EQ(r.windows, expected["schemes"][scheme]["windows"].get<int64_t>());
  EXPECT_NEAR(r.ppl, want, 1e-3 * want) << scheme;
}

}  // namespace
}  // namespace qjobs::quant
