// The FP4 codecs (E2M1 elements, E8M0 scales) against every code, and the
// packed NVFP4, MXFP4 and W4A8 tensors of small matrices against layouts
// written out by hand from the formats' definitions (compressed-tensors'
// nvfp4-/mxfp4-/pack-quantized; see jobs/export/packed.hpp).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "common/error.hpp"
#include "jobs/export/packed.hpp"
#include "jobs/model/act_quant.hpp"
#include "jobs/model/quantized_checkpoint.hpp"
#include "jobs/numeric/fp4.hpp"
#include "jobs/numeric/fp8.hpp"

namespace qjobs::quant {
namespace {

std::vector<float> values(const at::Tensor& t) {
  const auto c = t.to(at::kFloat).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}
std::vector<int> ints(const at::Tensor& t) {
  const auto c = t.to(at::kInt).contiguous();
  return std::vector<int>(c.data_ptr<int>(), c.data_ptr<int>() + c.numel());
}

TEST(E2m1, DecodesAll16Codes) {
  // Sign bit 3; exponent bits 2..1 with bias 1; mantissa bit 0; exponent 0 is subnormal (m * 0.5).
  const std::vector<float> want = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6, -0.0f, -0.5f, -1, -1.5f, -2, -3, -4, -6};
  EXPECT_EQ(values(numeric::e2m1_decode(at::arange(16, at::kLong).to(at::kByte))), want);
  // Every value encodes back to its code (-0 is written as 0).
  std::vector<int> back = ints(numeric::e2m1_encode(at::tensor(want)));
  std::vector<int> codes = {0, 1, 2, 3, 4, 5, 6, 7, 0, 9, 10, 11, 12, 13, 14, 15};
  EXPECT_EQ(back, codes);
}

TEST(E2m1, RoundsToNearestTiesToEvenAndSaturates) {
  const auto x = at::tensor({0.25f, 0.26f, 0.75f, 1.25f, 1.75f, 2.5f, 2.51f, 3.5f, 5.0f, 5.01f, 7.0f, 1e9f, -0.25f,
                             -5.0f, -100.0f, std::nanf("")});
  const std::vector<float> want = {0, 0.5f, 1, 1, 2, 2, 3, 4, 4, 6, 6, 6, 0, -4, -6, 0};
  EXPECT_EQ(values(numeric::e2m1_round(x)), want);
}

TEST(E8m0, DecodesTheWholeRange) {
  const auto v = values(numeric::e8m0_decode(at::arange(256, at::kLong).to(at::kByte)));
  for (int e = 0; e < 255; ++e) EXPECT_EQ(v[static_cast<std::size_t>(e)], std::ldexp(1.0f, e - 127)) << e;
  EXPECT_TRUE(std::isnan(v[255]));
  EXPECT_EQ(v[127], 1.0f);
}

TEST(Nvfp4, PacksASmallMatrixAsWrittenByHand) {
  // Row 0 holds every E2M1 magnitude and sign (amax 6); row 1 is row 0 / 2.
  const std::vector<float> row = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6, -0.5f, -1, -1.5f, -2, -3, -4, -6, 0.25f};
  auto w = at::stack({at::tensor(row), at::tensor(row) / 2});
  const auto b = numeric::fp4_quantize(w, numeric::Fp4Kind::nvfp4);
  // G = 448 * 6 / 6 = 448. Block scales: 6 / 6 * 448 = 448 (E4M3 0x7E),
  // 3 / 6 * 448 = 224 = 1.75 * 2^7 (field 14, mantissa 6: 0x76).
  EXPECT_EQ(b.global_scale, 448.0);
  EXPECT_EQ(ints(b.scale), (std::vector<int>{0x7E, 0x76}));
  numeric::Fp4Weight fw{numeric::Fp4Kind::nvfp4, b.codes, b.scale, b.global_scale, 0, false};
  const auto t = exporter::pack(fw);
  // Codes 0..7, 9..15, and 0.25 -> 0; column 2j in the low nibble.
  const std::vector<int> bytes = {0x10, 0x32, 0x54, 0x76, 0xA9, 0xCB, 0xED, 0x0F};
  std::vector<int> both = bytes;
  both.insert(both.end(), bytes.begin(), bytes.end());
  EXPECT_EQ(t.at("weight_packed").scalar_type(), at::kByte);
  EXPECT_EQ(t.at("weight_packed").sizes().vec(), (std::vector<int64_t>{2, 8}));
  EXPECT_EQ(ints(t.at("weight_packed")), both);
  EXPECT_EQ(values(t.at("weight_global_scale")), (std::vector<float>{448.0f}));
  EXPECT_FALSE(t.count("input_global_scale"));
  // Dequantized: fp4 * scale / G, exactly the inputs but 0.25 (-> 0).
  auto want = w.clone();
  want[0][15] = 0;
  want[1][15] = 0;
  EXPECT_TRUE(at::equal(fw.dequantize(), want));
}

TEST(Mxfp4, PacksASmallMatrixAsWrittenByHand) {
  // Row 0: amax 24 = 1.5 * 2^4 -> P = 4, scale 2^(4-2) = 4, E8M0 127 + 2 = 129.
  // Row 1: amax 7 = 1.75 * 2^2 -> rounds up to P = 3, scale 2, E8M0 128; 7 / 2 = 3.5 -> 4 (tie to even code).
  std::vector<float> r0(32, 0.0f), r1(32, 0.0f);
  const std::vector<float> mags = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
  for (int i = 0; i < 8; ++i) r0[static_cast<std::size_t>(i)] = mags[static_cast<std::size_t>(i)] * 4;
  r0[8] = -24;
  r1[0] = 7;
  r1[1] = -1;
  const auto w = at::stack({at::tensor(r0), at::tensor(r1)});
  const auto b = numeric::fp4_quantize(w, numeric::Fp4Kind::mxfp4);
  EXPECT_EQ(ints(b.scale), (std::vector<int>{129, 128}));
  numeric::Fp4Weight fw{numeric::Fp4Kind::mxfp4, b.codes, b.scale, 1, 0, false};
  const auto t = exporter::pack(fw);
  EXPECT_EQ(t.at("weight_packed").sizes().vec(), (std::vector<int64_t>{2, 16}));
  std::vector<int> want(32, 0);
  want[0] = 0x10;
  want[1] = 0x32;
  want[2] = 0x54;
  want[3] = 0x76;
  want[4] = 0x0F;   // row 0: codes 0..7, then -6 (15)
  want[16] = 0x96;  // row 1: 3.5 -> 4 (code 6), -1 / 2 = -0.5 (code 9)
  EXPECT_EQ(ints(t.at("weight_packed")), want);
  EXPECT_FALSE(t.count("weight_global_scale"));
  const auto d = values(fw.dequantize());
  EXPECT_EQ(d[32], 8.0f);  // 7 -> 4 * 2
  EXPECT_EQ(d[33], -1.0f);
  EXPECT_EQ(d[8], -24.0f);
}

TEST(W4a8, PacksASmallMatrixAsWrittenByHand) {
  // 8 x 8 int4 weight: codes[r][c] = (r + c) % 16, zero point r + 4 per row
  // (one group); pack-quantized: 8 codes per int32 word, column k at bits
  // 4k; zero points packed the same way along the output dimension.
  numeric::IntWeight iw;
  iw.bits = 4;
  iw.group_size = 8;
  iw.codes =
      (at::arange(8, at::kLong).view({8, 1}) + at::arange(8, at::kLong).view({1, 8})).remainder(16).to(at::kByte);
  iw.zeros = (at::arange(8, at::kInt) + 4).view({8, 1});
  iw.scales = at::full({8, 1}, 0.5f);
  iw.g_idx = at::zeros({8}, at::kInt);
  const auto t = exporter::pack(iw, exporter::PackedFormat::compressed_tensors, at::kFloat);
  // Row 0: 0x76543210; row 1: 0x87654321 (as int32: -2023406815); row 7: 0xEDCBA987.
  const auto packed = ints(t.at("weight_packed"));
  ASSERT_EQ(packed.size(), 8u);
  EXPECT_EQ(packed[0], 0x76543210);
  EXPECT_EQ(packed[1], static_cast<int>(0x87654321u));
  EXPECT_EQ(packed[7], static_cast<int>(0xEDCBA987u));
  // Zero points 4..11 along the outputs: 0xBA987654.
  EXPECT_EQ(ints(t.at("weight_zero_point")), (std::vector<int>{static_cast<int>(0xBA987654u)}));
  // The W4A8 scheme: these weights with int8 per-token dynamic inputs.
  auto s = exporter::int_scheme(iw, false);
  model::ActQuant a;
  a.kind = model::ActQuant::Kind::int_token;
  a.bits = 8;
  s.input_activations = exporter::activation_args(a);
  const auto qc = exporter::compressed_tensors_config({{"model.layers.0.mlp.up_proj", s}},
                                                      {"lm_head", "model.layers.0.mlp.gate_proj"}, nullptr);
  const auto& g = qc["config_groups"]["group_0"];
  EXPECT_EQ(qc["format"], "pack-quantized");
  EXPECT_EQ(g["weights"]["strategy"], "channel");
  EXPECT_EQ(g["weights"]["symmetric"], false);
  EXPECT_EQ(g["input_activations"]["num_bits"], 8);
  EXPECT_EQ(g["input_activations"]["strategy"], "token");
  EXPECT_EQ(g["input_activations"]["dynamic"], true);
  EXPECT_EQ(g["weights"]["actorder"], nullptr);
  // Every other Linear by name in ignore, lm_head once.
  EXPECT_EQ(qc["ignore"], (nlohmann::json{"lm_head", "model.layers.0.mlp.gate_proj"}));
  EXPECT_EQ(exporter::int_scheme(iw, true).weights["actorder"], "weight");
  // A per-column group map (the removed actorder "group") is refused, not written.
  auto shuffled = iw;
  shuffled.group_size = 4;
  shuffled.scales = at::full({8, 2}, 0.5f);
  shuffled.zeros = at::full({8, 2}, 8, at::kInt);
  shuffled.g_idx = at::tensor({1, 0, 1, 0, 1, 0, 1, 0}, at::kInt);
  EXPECT_THROW(exporter::int_scheme(shuffled, true), Error);
  // And what reads it back simulates the same activations.
  const auto back = model::activation_from_args(g["input_activations"], 0);
  EXPECT_EQ(back.kind, model::ActQuant::Kind::int_token);
  EXPECT_EQ(back.bits, 8);
}

TEST(CompressedTensorsGroups, MatchExactNamesBeforePatternsBeforeLinear) {
  const nlohmann::json qc = {
      {"quant_method", "compressed-tensors"},
      {"format", "mixed-precision"},
      {"ignore", {"lm_head", "re:.*layers\\.9\\..*"}},
      {"config_groups",
       {{"a", {{"targets", {"Linear"}}, {"format", "pack-quantized"}}},
        {"b", {{"targets", {"re:.*down_proj$"}}, {"format", "int-quantized"}}},
        {"c", {{"targets", {"model.layers.1.mlp.down_proj"}}, {"format", "nvfp4-pack-quantized"}}}}}};
  const auto fmt = [&](const std::string& n) {
    const auto* g = model::scheme_group(qc, n);
    return g ? model::group_format(qc, *g) : std::string("none");
  };
  EXPECT_EQ(fmt("model.layers.0.mlp.up_proj"), "pack-quantized");
  EXPECT_EQ(fmt("model.layers.0.mlp.down_proj"), "int-quantized");
  EXPECT_EQ(fmt("model.layers.1.mlp.down_proj"), "nvfp4-pack-quantized");
  EXPECT_EQ(fmt("model.layers.9.mlp.down_proj"), "none");
  // A pattern that does not compile or backtracks without end matches nothing.
  const nlohmann::json bad = {{"quant_method", "compressed-tensors"},
                              {"config_groups", {{"a", {{"targets", {"re:(", "re:(a+)+$"}}}}}}};
  EXPECT_EQ(model::scheme_group(bad, std::string(40, 'a') + "b"), nullptr);
}

TEST(Fp4Activations, SimulateBlocksWithTheirScales) {
  // NVFP4 inputs: blocks of 16 under the calibrated global scale; MXFP4: blocks of 32.
  at::manual_seed(0);
  const auto x = at::randn({3, 64});
  model::ActQuant nv;
  nv.kind = model::ActQuant::Kind::nvfp4;
  nv.scale = numeric::nvfp4_global_scale(x.abs().max().item<double>());
  const auto y = nv.apply(x);
  EXPECT_TRUE(at::equal(y, numeric::fp4_dequantize(numeric::fp4_quantize(x, numeric::Fp4Kind::nvfp4, nv.scale),
                                                   numeric::Fp4Kind::nvfp4)));
  EXPECT_LT(((y - x).norm() / x.norm()).item<double>(), 0.2);
  EXPECT_GT(((y - x).norm() / x.norm()).item<double>(), 0.01);
  model::ActQuant mx;
  mx.kind = model::ActQuant::Kind::mxfp4;
  const auto z = mx.apply(x);
  // Every block of 32 is a power of two times E2M1 values.
  const auto b = numeric::fp4_quantize(x, numeric::Fp4Kind::mxfp4);
  EXPECT_TRUE(at::equal(z, numeric::fp4_dequantize(b, numeric::Fp4Kind::mxfp4)));
  EXPECT_EQ(model::ActQuant::from_json(nv.to_json()).scale, nv.scale);
}

}  // namespace
}  // namespace qjobs::quant
