// Sequential MSE's search against a search written out by hand, its end
// points (one candidate is round-to-nearest), and what it is for: clipping
// a range whose extreme costs the outputs nothing.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "jobs/export/onnx_llama.hpp"
#include "jobs/quant/quantizer.hpp"
#include "jobs/quant/seq_mse.hpp"

namespace qjobs::quant {
namespace {

// One group of one row quantized with its range scaled by f, element by
// element (the quantizer's convention, written out).
std::vector<float> hand_quantize(const std::vector<float>& w, double f, int bits, bool zero_point) {
  std::vector<float> out(w.size());
  float lo = w[0], hi = w[0], amax = 0;
  for (float v : w) lo = std::min(lo, v), hi = std::max(hi, v), amax = std::max(amax, std::fabs(v));
  if (zero_point) {
    const float qmax = static_cast<float>((1 << bits) - 1);
    const float mx = hi * static_cast<float>(f), mn = lo * static_cast<float>(f);
    const float scale = std::max(mx - mn, 1e-5f) / qmax;
    const float zero = std::clamp(std::nearbyint(-mn / scale), 0.0f, qmax);
    for (std::size_t i = 0; i < w.size(); ++i)
      out[i] = (std::clamp(std::nearbyint(w[i] / scale) + zero, 0.0f, qmax) - zero) * scale;
  } else {
    const float qmax = static_cast<float>((1 << (bits - 1)) - 1), qmin = -qmax - 1;
    const float scale = std::max(amax * static_cast<float>(f), 1e-5f) / qmax;
    for (std::size_t i = 0; i < w.size(); ++i) out[i] = std::clamp(std::nearbyint(w[i] / scale), qmin, qmax) * scale;
  }
  return out;
}

struct Case {
  bool zero_point;
  int64_t group;
};

class SeqMseSearch : public ::testing::TestWithParam<Case> {};

TEST_P(SeqMseSearch, ChoosesTheCandidateAHandWrittenSearchChooses) {
  const auto [zero_point, group] = GetParam();
  at::manual_seed(11);
  const int64_t out_f = 5, in_f = 12, tokens = 24, C = 7;
  const int bits = 3;
  auto w = at::randn({out_f, in_f});
  w.index_put_({1, 2}, 4.0);  // outliers: the search has something to clip
  w.index_put_({3, 9}, -3.5);
  auto x = at::randn({tokens, in_f});
  WeightQuantConfig cfg;
  cfg.bits = bits;
  cfg.group_size = group;
  cfg.zero_point = zero_point;
  SeqMseOptions o;
  o.candidates = C;
  const auto r = seq_mse_quantize(w, x, cfg, o);
  const int64_t g = group <= 0 ? in_f : group, groups = in_f / g;
  ASSERT_EQ(r.candidate.size(1), groups);
  auto wa = w.accessor<float, 2>();
  auto xa = x.accessor<float, 2>();
  auto got = r.weight.accessor<float, 2>();
  for (int64_t row = 0; row < out_f; ++row)
    for (int64_t j = 0; j < groups; ++j) {
      std::vector<float> part(wa[row].data() + j * g, wa[row].data() + (j + 1) * g);
      double best = std::numeric_limits<double>::infinity();
      int64_t best_c = -1;
      std::vector<float> best_q;
      for (int64_t c = 0; c < C; ++c) {
        const auto q = hand_quantize(part, static_cast<double>(c + 1) / C, bits, zero_point);
        double loss = 0;
        for (int64_t t = 0; t < tokens; ++t) {
          double d = 0;
          for (int64_t k = 0; k < g; ++k) d += xa[t][j * g + k] * (static_cast<double>(q[k]) - part[k]);
          loss += d * d;
        }
        if (loss < best * (1 - 1e-6)) best = loss, best_c = c, best_q = q;
      }
      EXPECT_EQ(r.candidate[row][j].item<int64_t>(), best_c) << "row " << row << " group " << j;
      for (int64_t k = 0; k < g; ++k) EXPECT_NEAR(got[row][j * g + k], best_q[k], 1e-6) << row << "," << j * g + k;
    }
  // Something was clipped: the outliers' rows do not keep the full range.
  EXPECT_LT(r.candidate.min().item<int64_t>(), C - 1);
}

INSTANTIATE_TEST_SUITE_P(Grids, SeqMseSearch,
                         ::testing::Values(Case{true, 4}, Case{false, 4}, Case{true, -1}, Case{false, -1}),
                         [](const auto& info) {
                           return std::string(info.param.zero_point ? "Asym" : "Sym") +
                                  (info.param.group > 0 ? "G" + std::to_string(info.param.group) : "PerChannel");
                         });

TEST(SeqMse, OneCandidateIsRoundToNearest) {
  at::manual_seed(3);
  const auto w = at::randn({6, 16});
  const auto x = at::randn({10, 16});
  for (bool zp : {true, false})
    for (int64_t g : {int64_t{4}, int64_t{-1}}) {
      WeightQuantConfig cfg;
      cfg.bits = 4;
      cfg.group_size = g;
      cfg.zero_point = zp;
      SeqMseOptions o;
      o.candidates = 1;
      const auto r = seq_mse_quantize(w, x, cfg, o);
      const auto rtn = quantize_weight(w, cfg);
      EXPECT_TRUE(at::equal(r.q.codes, rtn.codes.to(at::kInt))) << zp << " " << g;
      EXPECT_TRUE(at::allclose(r.q.scales, rtn.scales, 0, 0)) << zp << " " << g;
      EXPECT_TRUE(at::equal(r.weight, rtn.dequantize())) << zp << " " << g;
    }
}

TEST(SeqMse, ClipsAnOutlierWhoseInputIsAlwaysZero) {
  // Column 0 holds the row's largest weight but its input is always 0: the
  // output does not depend on it, so the best range ignores it, and the
  // output error falls far below round-to-nearest's.
  at::manual_seed(5);
  auto w = at::randn({4, 32}) * 0.1;
  w.select(1, 0).fill_(5.0);
  auto x = at::randn({64, 32});
  x.select(1, 0).zero_();
  WeightQuantConfig cfg;
  cfg.bits = 4;
  cfg.group_size = -1;
  cfg.zero_point = false;
  SeqMseOptions o;
  const auto r = seq_mse_quantize(w, x, cfg, o);
  const auto rtn = quantize_weight(w, cfg).dequantize();
  const auto y = at::matmul(x, w.t());
  const double e_seq = (at::matmul(x, r.weight.t()) - y).norm().item<double>();
  const double e_rtn = (at::matmul(x, rtn.t()) - y).norm().item<double>();
  // max|w| = 5 with rows of N(0, 0.1): the full range leaves the other
  // weights ~1 step of 5/7; the search keeps ~1/20 of it.
  EXPECT_LT(e_seq, 0.2 * e_rtn) << e_seq << " vs " << e_rtn;
  EXPECT_LE(r.candidate.max().item<int64_t>(), 2);  // at most 3/20 of the range
}

TEST(SeqMse, LossesScoreWhatTheirNamesSay) {
  // sqnr over one window chooses as mse does (it is monotone in the squared
  // error); l1 minimizes the absolute error.
  at::manual_seed(8);
  const auto w = at::randn({8, 16});
  const auto x = at::randn({40, 16});
  WeightQuantConfig cfg;
  cfg.bits = 3;
  cfg.group_size = -1;
  cfg.zero_point = true;
  SeqMseOptions o;
  o.loss = SeqMseLoss::mse;
  const auto mse = seq_mse_quantize(w, x, cfg, o);
  o.loss = SeqMseLoss::sqnr;
  const auto sqnr = seq_mse_quantize(w, x, cfg, o);
  EXPECT_TRUE(at::equal(mse.candidate, sqnr.candidate));
  // l1's choice has the least summed absolute error among the candidates.
  o.loss = SeqMseLoss::l1;
  const auto l1 = seq_mse_quantize(w, x, cfg, o);
  const auto y = at::matmul(x, w.t());
  const auto abs_err = [&](const at::Tensor& wq) { return (at::matmul(x, wq.t()) - y).abs().sum(0); };
  const auto e_l1 = abs_err(l1.weight), e_mse = abs_err(mse.weight);
  EXPECT_TRUE((e_l1 <= e_mse + 1e-4).all().item<bool>());
}

TEST(Lpbq, BlockScalesBecomeIntegerMultiplesOfOneChannelScale) {
  // W4 under 8-bit block scales: c = max / 16, k = clamp(round(s / c), 1, 16).
  //   row 0: c = 0.5 / 16 = 0.03125; 0.13 / c = 4.16 -> 4; 0.02 / c = 0.64 -> 1 (the floor)
  //   row 1: c = 0.08 / 16 = 0.005;  0.01 / c = 2
  const auto s = at::tensor({0.5f, 0.13f, 0.02f, 0.08f, 0.08f, 0.01f}).reshape({2, 3});
  const auto got = lpbq_scales(s, 4);
  const auto want = at::tensor({0.5f, 0.125f, 0.03125f, 0.08f, 0.08f, 0.01f}).reshape({2, 3});
  EXPECT_TRUE(at::allclose(got, want, 1e-6, 1e-9)) << got;
}

TEST(Lpbq, AimetEncodingsCarryTheChannelScaleAndTheBlockIntegers) {
  // One 4-bit Linear, 2 rows of 3 blocks of 4, on the scales above: the
  // LPBQ entry dequantizes the codes as (q + offset_4bit) * k * c.
  at::manual_seed(2);
  const auto scales = lpbq_scales(at::tensor({0.5f, 0.13f, 0.02f, 0.08f, 0.08f, 0.01f}).reshape({2, 3}), 4);
  const auto w = at::randn({2, 12}) * 0.3;
  const auto q = quantize_with_scales(w, scales, 4, 4);
  std::map<std::string, numeric::IntWeight> ints = {{"model.layers.0.self_attn.q_proj", to_int_weight(q, 4)}};
  exporter::onnx::Quantization qz;
  qz.int_weights = &ints;
  qz.lpbq = true;
  std::ifstream f(std::string(QJOBS_SOURCE_DIR) + "/examples/kjv-llama/config.json");
  std::stringstream ss;
  ss << f.rdbuf();
  const auto enc = exporter::onnx::aimet_encodings(nlohmann::json::parse(ss.str()), qz);
  ASSERT_EQ(enc["param_encodings"].size(), 1u);
  const auto& e = enc["param_encodings"][0];
  EXPECT_EQ(e["name"], "model.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ(e["enc_type"], "LPBQ");
  EXPECT_EQ(e["bw"], 8);
  EXPECT_EQ(e["compressed_bw"], 4);
  EXPECT_EQ(e["block_size"], 4);
  EXPECT_EQ(e["is_sym"], true);
  EXPECT_EQ(e["offset"], nlohmann::json::array({-128, -128}));
  EXPECT_EQ(e["per_block_int_scale"], nlohmann::json::array({16, 4, 1, 16, 16, 2}));
  ASSERT_EQ(e["scale"].size(), 2u);
  EXPECT_NEAR(e["scale"][0].get<double>(), 0.03125, 1e-9);
  EXPECT_NEAR(e["scale"][1].get<double>(), 0.005, 1e-9);
  const auto deq = q.dequantize();
  for (int64_t r = 0; r < 2; ++r)
    for (int64_t c = 0; c < 12; ++c) {
      const double k = e["per_block_int_scale"][static_cast<std::size_t>(r * 3 + c / 4)].get<double>();
      const double v = q.codes[r][c].item<double>() * k * e["scale"][static_cast<std::size_t>(r)].get<double>();
      EXPECT_NEAR(v, deq[r][c].item<double>(), 1e-7) << r << "," << c;
    }
}

}  // namespace
}  // namespace qjobs::quant
