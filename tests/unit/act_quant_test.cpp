// Simulated activation / KV quantization against values worked out by hand,
// and the function-preserving transforms (rotation, smoothing, reordering)
// on every reference model: the logits must not move.
#include <unistd.h>

#include <filesystem>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include "common/error.hpp"
#include "jobs/model/act_quant.hpp"
#include "jobs/model/checkpoint.hpp"
#include "jobs/model/llama_model.hpp"
#include "jobs/model/random_model.hpp"
#include "jobs/quant/smoothquant.hpp"
#include "jobs/quant/transforms.hpp"
#include "unit/reference.hpp"

namespace qjobs::model {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

at::Tensor t(std::vector<float> v) { return at::tensor(v); }

TEST(ActQuant, IntPerTokenUsesTheRowMaximum) {
  // scale = 3 / 127; 1 -> 42.33 -> 42; -2 -> -84.67 -> -85; 0.5 -> 21.17 -> 21; 3 -> 127.
  ActQuant a;
  a.kind = ActQuant::Kind::int_token;
  const auto y = a.apply(t({1, -2, 0.5, 3}).reshape({1, 4}));
  const double s = 3.0 / 127;
  const auto want =
      t({static_cast<float>(42 * s), static_cast<float>(-85 * s), static_cast<float>(21 * s), 3}).reshape({1, 4});
  EXPECT_TRUE(at::allclose(y, want, 0, 1e-6)) << y;
  // Each row has its own scale: a second row of small values stays fine.
  const auto two = a.apply(t({1, -2, 0.5, 3, 0.01f, 0.02f, -0.03f, 0}).reshape({2, 4}));
  EXPECT_NEAR(two[1][2].item<double>(), -0.03, 0.03 / 254);
}

TEST(ActQuant, IntPerTensorClampsToTheCalibratedRange) {
  // 4 bits, scale 0.5: 0.74 -> 1.48 -> 1 -> 0.5; -5 -> -10 -> clamp -8 -> -4; 3.3 -> 6.6 -> 7 -> 3.5.
  ActQuant a;
  a.kind = ActQuant::Kind::int_tensor;
  a.bits = 4;
  a.scale = 0.5;
  EXPECT_TRUE(at::allclose(a.apply(t({0.74f, -5, 3.3f})), t({0.5, -4, 3.5}), 0, 1e-6));
}

TEST(ActQuant, Fp8PerTokenRoundsOnTheE4m3Grid) {
  // scale = 1/448: 0.3 * 448 = 134.4 lies between E4M3 neighbours 128 and 144.
  ActQuant a;
  a.kind = ActQuant::Kind::fp8_token;
  const auto y = a.apply(t({1, 0.3f}).reshape({1, 2}));
  EXPECT_NEAR(y[0][0].item<double>(), 1.0, 1e-6);
  EXPECT_NEAR(y[0][1].item<double>(), 128.0 / 448, 1e-6);
}

TEST(ActQuant, JsonRoundTripAndBadInput) {
  ActQuant a;
  a.kind = ActQuant::Kind::int_tensor;
  a.bits = 16;
  a.scale = 0.25;
  const auto b = ActQuant::from_json(a.to_json());
  EXPECT_EQ(b.kind, a.kind);
  EXPECT_EQ(b.bits, 16);
  EXPECT_EQ(b.scale, 0.25);
  EXPECT_THROW(ActQuant::from_json(json{{"kind", "int_tensor"}}), Error);  // no scale
  EXPECT_THROW(ActQuant::from_json(json{{"kind", "int5"}}), Error);
}

TEST(KvQuant, AsymmetricPerTokenPerHeadAndPerGroup) {
  // One head, 4 channels [0, 1, 2, 3.1], 4 bits: scale 3.1/15, zero 0;
  // 1 -> 4.84 -> 5; 2 -> 9.68 -> 10.
  KvQuant q;
  q.kind = KvQuant::Kind::integer;
  q.bits = 4;
  const auto x = t({0, 1, 2, 3.1f}).reshape({1, 1, 1, 4});
  const double s = 3.1 / 15;
  EXPECT_TRUE(at::allclose(q.apply(x, 0, true).flatten(),
                           t({0, static_cast<float>(5 * s), static_cast<float>(10 * s), 3.1f}), 0, 1e-5));
  // Groups of 2: [0, 1] is exact; [2, 3.1] has scale 1.1/15 and zero
  // round(-2 / s) = -27, so 2 -> 27 - 27 = 0 -> 27 s = 1.98 and 3.1 -> 42 - 27 = 15 -> 42 s = 3.08.
  q.group = 2;
  const double s2 = 1.1 / 15;
  EXPECT_TRUE(at::allclose(q.apply(x, 0, true).flatten(),
                           t({0, 1, static_cast<float>(27 * s2), static_cast<float>(42 * s2)}), 0, 1e-5));
}

TEST(KvQuant, Fp8UsesTheLayersScale) {
  KvQuant q;
  q.kind = KvQuant::Kind::fp8;
  q.k_scale = {0.5, 2.0};
  q.v_scale = {1.0, 1.0};
  // Layer 1 keys: 300 / 2 = 150 -> E4M3 144 (step 16 in [128, 256)) -> 288.
  EXPECT_NEAR(q.apply(t({300}), 1, true).item<double>(), 288, 1e-4);
  // Layer 0 keys: 300 / 0.5 = 600 saturates at 448 -> 224.
  EXPECT_NEAR(q.apply(t({300}), 0, true).item<double>(), 224, 1e-4);
  EXPECT_THROW(q.apply(t({1}), 2, true), Error);
}

class Simulated : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("qjobs_act_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    RandomModelOptions o;
    o.layers = 2;
    o.init_std = 0.1;
    o.seed = 3;
    write_random_llama(dir_, o);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(Simulated, ActivationBitsMoveTheLogitsAsExpected) {
  const auto ckpt = Checkpoint::open(dir_);
  at::NoGradGuard g;
  const auto ids = at::randint(0, 256, {2, 16}, at::kLong);
  auto m = LlamaModel::load(ckpt);
  const auto ref = m.forward(ids);
  const auto err_at = [&](int bits) {
    json acts = json::object();
    for (int64_t l = 0; l < 2; ++l)
      for (auto& [n, lin] : m.layers()[static_cast<std::size_t>(l)].linears())
        acts["model.layers." + std::to_string(l) + "." + n] = {{"kind", "int_token"}, {"bits", bits}};
    m.apply_simulated_quantization({{"activations", acts}});
    return ((m.forward(ids) - ref).norm() / ref.norm()).item<double>();
  };
  const double e16 = err_at(16), e8 = err_at(8), e4 = err_at(4);
  // 8 fewer bits make the step 256 times coarser; errors through a random
  // 2-layer model stay far apart (measured ratio about 250).
  EXPECT_LT(e16, 1e-3);
  EXPECT_GT(e8, 30 * e16);
  EXPECT_GT(e4, 4 * e8);  // each bit removed doubles the step
  EXPECT_THROW(
      m.apply_simulated_quantization({{"activations", {{"model.layers.9.mlp.up_proj", {{"kind", "int_token"}}}}}}),
      Error);
}

// Max |a - b| relative to max |b|.
double rel_max(const at::Tensor& a, const at::Tensor& b) {
  return ((a - b).abs().max() / b.abs().max()).item<double>();
}

// Every transform at once, with random scales: the logits must stay.
void expect_transforms_preserve_logits(const fs::path& dir, const std::string& label) {
  const auto ckpt = Checkpoint::open(dir);
  at::NoGradGuard g;
  auto m = LlamaModel::load(ckpt);
  const auto& c = m.config();
  const auto ids = at::randint(0, c.vocab, {2, 24}, at::kLong);
  const auto ref = m.forward(ids);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
  const auto rnd = [&](int64_t n) { return at::exp(at::normal(0.0, 0.5, {n}, gen)); };

  // SmoothQuant's fold into the norms first (it needs the norm weights).
  auto& l0 = m.layers()[0];
  quant::smooth_linears(l0.input_norm, {&l0.q_proj, &l0.k_proj, &l0.v_proj}, rnd(c.hidden), 0.5);
  quant::smooth_linears(l0.post_norm, {&l0.gate_proj, &l0.up_proj}, rnd(c.hidden), 0.8);
  const double after_sq = rel_max(m.forward(ids), ref);

  quant::fuse_norms(m);
  quant::rotate_residual(m, quant::rotation_matrix(c.hidden, 7));
  quant::rotate_value_heads(m, quant::rotation_matrix(c.head_dim, 9));
  const double after_rot = rel_max(m.forward(ids), ref);
  for (auto& l : m.layers()) {
    const auto half = rnd(c.kv_heads * c.head_dim / 2).reshape({c.kv_heads, 1, c.head_dim / 2});
    quant::smooth_attention(l, c, at::cat({half, half}, 1).reshape({-1}));
    quant::smooth_value_out(l, c, rnd(c.kv_heads * c.head_dim));
    quant::smooth_up_down(l, rnd(c.intermediate));
    quant::reorder_intermediate(l, at::randperm(c.intermediate, gen, at::kLong));
  }
  const double after_all = rel_max(m.forward(ids), ref);
  EXPECT_LE(after_sq, 1e-4) << label;
  EXPECT_LE(after_rot, 1e-4) << label;
  EXPECT_LE(after_all, 1e-4) << label;
  // The weights did change (a transform that does nothing would pass the above).
  EXPECT_FALSE(at::allclose(m.layers()[0].q_proj.weight, LlamaModel::load(ckpt).layers()[0].q_proj.weight)) << label;
  ::testing::Test::RecordProperty(label, std::to_string(after_all));
}

TEST(Transforms, RotationMatricesAreOrthogonal) {
  for (int64_t n : {8, 64, 128, 12, 172}) {
    const auto q = quant::rotation_matrix(n, 3);
    EXPECT_TRUE(at::allclose(at::matmul(q, q.t()), at::eye(n), 0, 1e-5)) << n;
  }
  // The plain Hadamard of 4, by hand.
  const auto h = quant::rotation_matrix(4, 0) * 2;
  EXPECT_TRUE(at::equal(h, t({1, 1, 1, 1, 1, -1, 1, -1, 1, 1, -1, -1, 1, -1, -1, 1}).reshape({4, 4})));
}

TEST_F(Simulated, TransformsPreserveARandomModel) { expect_transforms_preserve_logits(dir_, "random"); }

TEST(Transforms, PreserveEveryReferenceModel) {
  QJOBS_REQUIRE_REFERENCE(ref);
  int seen = 0;
  for (const auto& e : fs::directory_iterator(ref / "models")) {
    if (!fs::exists(e.path() / "config.json")) continue;
    expect_transforms_preserve_logits(e.path(), e.path().filename().string());
    ++seen;
  }
  EXPECT_GE(seen, 4);
}

}  // namespace
}  // namespace qjobs::model
