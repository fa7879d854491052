// Sequential MSE's search against a search written out by hand, its end
// points (one candidate is round-to-nearest), and what it is for: clipping
// a range whose extreme costs the outputs nothing.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

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
    for (std::size_t i = 0; i < w.size(); ++i) out[i] = (std::clamp(std::nearbyint(w[i] / scale) + zero, 0.0f, qmax) - zero) * scale;
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

}  // namespace
}  // namespace qjobs::quant
