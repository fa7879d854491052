// GPTQ, AWQ, HQQ, overrides and resume on small models the test makes.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <ATen/core/grad_mode.h>

#include "common/error.hpp"
#include "jobs/quant/layer_plan.hpp"
#include "jobs/export/packed.hpp"
#include "jobs/model/checkpoint.hpp"
#include "jobs/model/llama_model.hpp"
#include "jobs/model/random_model.hpp"
#include "jobs/quant/awq.hpp"
#include "jobs/quant/gptq.hpp"
#include "jobs/quant/hqq.hpp"
#include "jobs/quant/quantizer.hpp"
#include "jobs/quant/rtn.hpp"
#include "jobs/quant/seq_mse.hpp"

namespace qjobs::quant {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

// GPTQ's round-to-nearest, written out: range [min(min,0), max(max,0)],
// scale = range / (2^b - 1), zero = round(-lo / scale), per group of g columns.
at::Tensor hand_rtn_through_zero(const at::Tensor& w, int bits, int64_t g) {
  auto out = at::empty_like(w);
  const float maxq = static_cast<float>((1 << bits) - 1);
  auto a = w.accessor<float, 2>();
  auto o = out.accessor<float, 2>();
  for (int64_t r = 0; r < w.size(0); ++r)
    for (int64_t c0 = 0; c0 < w.size(1); c0 += g) {
      float lo = 0, hi = 0;
      for (int64_t c = c0; c < c0 + g; ++c) {
        lo = std::min(lo, a[r][c]);
        hi = std::max(hi, a[r][c]);
      }
      const float scale = (hi - lo) / maxq;
      const float zero = std::nearbyint(-lo / scale);
      for (int64_t c = c0; c < c0 + g; ++c) {
        const float q = std::clamp(std::nearbyint(a[r][c] / scale) + zero, 0.0f, maxq);
        o[r][c] = scale * (q - zero);
      }
    }
  return out;
}

TEST(Gptq, WithAnIdentityHessianItIsRoundToNearest) {
  at::manual_seed(1);
  const auto w = at::randn({16, 64});
  const auto r = gptq_quantize(w, at::eye(64), {4, 16, true, RangeMode::through_zero}, 0.01, 128, false, false);
  const auto want = hand_rtn_through_zero(w, 4, 16);
  EXPECT_LE((r.weight - want).abs().max().item<float>(), 1e-6);
  EXPECT_TRUE(at::equal(r.g_idx, at::arange(64, at::kInt).div(16, "floor").to(at::kInt)));
}

TEST(Gptq, ReducesOutputErrorOnCorrelatedInputs) {
  at::manual_seed(2);
  const auto mix = at::randn({64, 64});
  const auto x = at::matmul(at::randn({2048, 64}), mix);  // strongly correlated channels
  const auto w = at::randn({32, 64});
  const auto H = at::matmul(x.t(), x) * (2.0 / 2048);
  for (const bool act_order : {false, true}) {
    const auto g = gptq_quantize(w, H, {3, 16, true, RangeMode::through_zero}, 0.01, 32, act_order, act_order);
    const auto rtn = hand_rtn_through_zero(w, 3, 16);
    const double e_gptq = (at::matmul(x, (g.weight - w).t())).norm().item<double>();
    const double e_rtn = (at::matmul(x, (rtn - w).t())).norm().item<double>();
    EXPECT_LT(e_gptq, 0.8 * e_rtn) << "act_order " << act_order;
    // Every column's group is consistent with the values: columns of one
    // group share a scale, so the group count is ceil(64 / 16).
    EXPECT_EQ(std::get<0>(at::_unique(g.g_idx)).numel(), 4);
  }
}

TEST(Hqq, NeverWorseThanItsStartingPoint) {
  at::manual_seed(3);
  const auto w = at::randn({64, 128}) * at::rand({1, 128}) * 3;  // uneven channel ranges
  const auto h = hqq_quantize(w, 3, 64).weight;
  // The solver's starting point: range min..max, real-valued zero, no search.
  const auto W = w.reshape({-1, 64});
  const auto mn = std::get<0>(W.min(1, true)), mx = std::get<0>(W.max(1, true));
  const auto scale = 7.0 / (mx - mn);
  const auto zero = -mn * scale;
  const auto start = ((at::clamp(at::round(W * scale + zero), 0, 7) - zero) / scale).reshape({64, 128});
  EXPECT_LE((h - w).abs().mean().item<double>(), (start - w).abs().mean().item<double>() + 1e-9);
}

class ModelQuant : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("qjobs_wq_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    model::RandomModelOptions o;
    o.hidden = 64;
    o.intermediate = 128;
    o.layers = 3;
    o.heads = 4;
    o.kv_heads = 4;  // v -> o scaling applies
    o.vocab = 96;
    o.init_std = 0.1;
    o.seed = 5;
    model::write_random_llama(dir_ / "m", o);
    ckpt_ = std::make_unique<model::Checkpoint>(model::Checkpoint::open(dir_ / "m"));
    ids_ = at::randint(0, 96, {8, 32}, at::kLong);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Inputs for ALGORITHM `algorithm` with section `params`, planned as the pipeline plans them.
  QuantInputs inputs(const std::string& algorithm, json params, fs::path state = {}) {
    QuantInputs in;
    in.ckpt = ckpt_.get();
    in.params = std::move(params);
    in.plan = plan_linears(algorithm, in.params, *in.ckpt);
    in.calibration = [this] { return ids_; };
    in.state_dir = std::move(state);
    in.progress = [](int64_t, int64_t, const std::string&) {};
    return in;
  }
  // Inputs with a state folder whose run is killed once `block` blocks are done.
  QuantInputs killed_after(const std::string& algorithm, json params, int64_t block) {
    auto in = inputs(algorithm, std::move(params), dir_ / "state");
    in.progress = [block](int64_t done, int64_t, const std::string&) {
      if (done == block) throw Error(ErrorKind::cancelled, "killed after block " + std::to_string(block));
    };
    return in;
  }
  // Logits of the checkpoint with `replaced` tensors swapped in.
  at::Tensor logits_with(const std::map<std::string, at::Tensor>& replaced) {
    auto m = model::LlamaModel::load(*ckpt_);
    for (auto& [name, t] : m.parameters())
      if (replaced.count(name)) *t = replaced.at(name);
    m.retie();
    at::NoGradGuard g;
    return m.forward(ids_);
  }

  fs::path dir_;
  std::unique_ptr<model::Checkpoint> ckpt_;
  at::Tensor ids_;
};

TEST_F(ModelQuant, AwqScalingIsFoldedWithoutChangingTheFunction) {
  // At 8 bits rounding costs little, so the scaled model must stay as close
  // to the original as plain RTN at 8 bits: a folding mistake (a scale on
  // one side only) would move the logits far more.
  const json p = {{"W_BIT", 8}, {"Q_GROUP_SIZE", 32}, {"ZERO_POINT", true}, {"CLIP", false}};
  const auto out = AwqAlgorithm().run(inputs("AutoAWQ", p));
  const auto ref = logits_with({});
  const double awq = ((logits_with(out.replaced) - ref).norm() / ref.norm()).item<double>();
  const double rtn =
      ((logits_with(RtnAlgorithm().run(inputs("RTN", p)).replaced) - ref).norm() / ref.norm()).item<double>();
  EXPECT_LT(awq, 1.5 * rtn) << "awq " << awq << " rtn " << rtn;
  EXPECT_LT(awq, 0.05);
  EXPECT_TRUE(out.replaced.count("model.layers.0.input_layernorm.weight"));
  // The norms were actually rescaled (AWQ did something).
  EXPECT_FALSE(at::equal(out.replaced.at("model.layers.0.input_layernorm.weight"),
                         ckpt_->tensor("model.layers.0.input_layernorm.weight")));
}

TEST_F(ModelQuant, AwqAndGptqBeatRtnOnOutputError) {
  const json p = {{"W_BIT", 3}, {"Q_GROUP_SIZE", 32}, {"ZERO_POINT", true}};
  const auto ref = logits_with({});
  const auto err = [&](const QuantOutput& o) {
    return ((logits_with(o.replaced) - ref).norm() / ref.norm()).item<double>();
  };
  const double rtn = err(RtnAlgorithm().run(inputs("RTN", p)));
  const double awq = err(AwqAlgorithm().run(inputs("AutoAWQ", p)));
  const double gptq = err(GptqAlgorithm().run(inputs("GPTQ", p)));
  RecordProperty("rtn", std::to_string(rtn));
  EXPECT_LT(awq, rtn) << "awq " << awq << " rtn " << rtn;
  EXPECT_LT(gptq, rtn) << "gptq " << gptq << " rtn " << rtn;
}

TEST_F(ModelQuant, SequentialMseBeatsRtnPerLinearAndOnTheLogits) {
  // Candidate N is RTN's own range, so on the inputs each Linear was tuned
  // on (block 0's are the model's: the same for both) the output error is
  // never above RTN's; over the whole model the logits are closer too.
  const json p = {{"W_BIT", 3}, {"Q_GROUP_SIZE", 32}, {"ZERO_POINT", true}, {"NUM_CANDIDATES", 20}};
  const auto rtn = RtnAlgorithm().run(inputs("RTN", p));
  const auto seq = SequentialMseAlgorithm().run(inputs("SequentialMSE", p));
  const auto ref = logits_with({});
  const auto err = [&](const QuantOutput& o) {
    return ((logits_with(o.replaced) - ref).norm() / ref.norm()).item<double>();
  };
  const double e_rtn = err(rtn), e_seq = err(seq);
  EXPECT_LT(e_seq, e_rtn) << "seq_mse " << e_seq << " rtn " << e_rtn;
  ASSERT_EQ(seq.int_weights.size(), 21u);  // 7 Linears x 3 blocks, each with its integer form
  EXPECT_EQ(seq.quantization_config["quant_method"], "sequential_mse");
  const double fraction = seq.quantization_config["mean_range_fraction"];
  EXPECT_LT(fraction, 1.0);  // some ranges were clipped
  EXPECT_GT(fraction, 0.3);
  EXPECT_FALSE(seq.quantization_config.contains("activations"));  // A_BIT 0: weights only
}

TEST_F(ModelQuant, SequentialMseW4A16RecordsStaticInputScalesThatSurviveAResume) {
  // w4a16 with the down projections w8a16 (AI Hub's mixed recipe); the run
  // is killed after block 2 and resumed: the restored blocks keep their
  // activation scales, and everything equals the uninterrupted run.
  const json p = {
      {"W_BIT", 4},           {"Q_GROUP_SIZE", 32},
      {"ZERO_POINT", false},  {"A_BIT", 16},
      {"NUM_CANDIDATES", 10}, {"LAYER_OVERRIDES", json::array({{{"pattern", "*.down_proj"}, {"W_BIT", 8}}})}};
  const auto full = SequentialMseAlgorithm().run(inputs("SequentialMSE", p));
  const auto& acts = full.quantization_config["activations"];
  ASSERT_EQ(acts.size(), 21u);
  const auto a = model::ActQuant::from_json(acts["model.layers.2.mlp.down_proj"]);
  EXPECT_EQ(a.kind, model::ActQuant::Kind::int_tensor);
  EXPECT_EQ(a.bits, 16);
  EXPECT_GT(a.scale, 0);
  EXPECT_EQ(full.int_weights.at("model.layers.1.mlp.down_proj").bits, 8);
  EXPECT_EQ(full.int_weights.at("model.layers.1.mlp.up_proj").bits, 4);

  EXPECT_THROW(SequentialMseAlgorithm().run(killed_after("SequentialMSE", p, 2)), Error);
  const auto resumed = SequentialMseAlgorithm().run(inputs("SequentialMSE", p, dir_ / "state"));
  EXPECT_EQ(resumed.resumed_blocks, 2);
  EXPECT_EQ(resumed.quantization_config["activations"], acts);
  for (const auto& [name, t] : full.replaced) EXPECT_TRUE(at::equal(resumed.replaced.at(name), t)) << name;
}

TEST_F(ModelQuant, SequentialMseLpbqBlockScalesAreMultiplesOfAChannelScale) {
  const json p = {{"W_BIT", 4}, {"Q_GROUP_SIZE", 16}, {"ZERO_POINT", false}, {"LPBQ", true}, {"NUM_CANDIDATES", 10}};
  const auto out = SequentialMseAlgorithm().run(inputs("SequentialMSE", p));
  ASSERT_EQ(out.int_weights.size(), 21u);
  for (const auto& [name, w] : out.int_weights) {
    const auto channel = w.scales.amax(1, true) / 16;
    const auto k = w.scales / channel;
    EXPECT_LT((k - k.round()).abs().max().item<double>(), 1e-4) << name;
    EXPECT_GE(k.round().min().item<double>(), 1) << name;
    EXPECT_LE(k.round().max().item<double>(), 16) << name;
  }
  EXPECT_TRUE(out.quantization_config["lpbq"].get<bool>());
  EXPECT_THROW(SequentialMseAlgorithm().run(inputs("SequentialMSE", {{"LPBQ", true}, {"ZERO_POINT", true}})), Error);
}

TEST_F(ModelQuant, OverridesSetBitsAndSkipLayers) {
  const json p = {{"W_BIT", 2},
                  {"Q_GROUP_SIZE", 32},
                  {"ZERO_POINT", true},
                  {"LAYER_OVERRIDES", json::array({{{"pattern", "model.layers.0.*"}, {"W_BIT", 8}},
                                                   {{"pattern", "*.down_proj"}, {"SKIP", true}}})}};
  const auto out = RtnAlgorithm().run(inputs("RTN", p));
  EXPECT_FALSE(out.replaced.count("model.layers.1.mlp.down_proj.weight"));  // skipped: kept as is
  double l0 = 0, l1 = 0;
  for (const auto& e : out.layer_errors) {
    if (e.name == "model.layers.0.self_attn.q_proj.weight") l0 = e.rel_fro_err;
    if (e.name == "model.layers.1.self_attn.q_proj.weight") l1 = e.rel_fro_err;
  }
  EXPECT_LT(l0, 0.02);  // 8 bits
  EXPECT_GT(l1, 0.2);   // 2 bits
  // The first matching entry wins: layer 0's down_proj is 8-bit, not skipped.
  EXPECT_TRUE(out.replaced.count("model.layers.0.mlp.down_proj.weight"));
}

TEST_F(ModelQuant, InterruptedCalibrationResumesAtTheNextBlock) {
  const json p = {{"W_BIT", 3}, {"Q_GROUP_SIZE", 32}, {"ZERO_POINT", true}};
  const auto full = GptqAlgorithm().run(inputs("GPTQ", p));
  EXPECT_THROW(GptqAlgorithm().run(killed_after("GPTQ", p, 2)), Error);
  auto again = inputs("GPTQ", p, dir_ / "state");
  std::vector<int64_t> seen;
  again.progress = [&](int64_t done, int64_t, const std::string&) { seen.push_back(done); };
  const auto resumed = GptqAlgorithm().run(again);
  EXPECT_EQ(resumed.resumed_blocks, 2);
  EXPECT_EQ(seen.front(), 2);  // the first report is the restored position
  ASSERT_EQ(resumed.replaced.size(), full.replaced.size());
  for (const auto& [name, t] : full.replaced) EXPECT_TRUE(at::equal(resumed.replaced.at(name), t)) << name;
  EXPECT_EQ(resumed.layer_errors.size(), full.layer_errors.size());
}

}  // namespace
}  // namespace qjobs::quant

namespace qjobs::exporter {
namespace {

// The packed layouts written out by hand for an 8 x 8 matrix, one group.
TEST(PackedFormats, MatchTheLayoutWrittenByHand) {
  auto codes = at::empty({8, 8}, at::kInt);
  auto zeros = at::empty({8, 1}, at::kInt);
  auto scales = at::empty({8, 1});
  for (int o = 0; o < 8; ++o) {
    for (int i = 0; i < 8; ++i) codes[o][i] = (o * 3 + i * 5) % 16;
    zeros[o][0] = o + 4;
    scales[o][0] = 0.5f + static_cast<float>(o);
  }
  numeric::IntWeight w{codes, scales, zeros, at::zeros({8}, at::kInt), 4, 8};
  const auto word = [](uint32_t v) { return static_cast<int32_t>(v); };

  const int order[8] = {0, 2, 4, 6, 1, 3, 5, 7};
  const auto awq = pack(w, PackedFormat::awq);
  ASSERT_EQ(awq.at("qweight").sizes().vec(), (std::vector<int64_t>{8, 1}));
  for (int i = 0; i < 8; ++i) {
    uint32_t v = 0;
    for (int k = 0; k < 8; ++k) v |= static_cast<uint32_t>((order[k] * 3 + i * 5) % 16) << (4 * k);
    EXPECT_EQ(awq.at("qweight")[i][0].item<int32_t>(), word(v)) << "input row " << i;
  }
  uint32_t zv = 0;
  for (int k = 0; k < 8; ++k) zv |= static_cast<uint32_t>(order[k] + 4) << (4 * k);
  EXPECT_EQ(awq.at("qzeros")[0][0].item<int32_t>(), word(zv));
  EXPECT_EQ(awq.at("scales").scalar_type(), at::kHalf);
  EXPECT_EQ(awq.at("scales").sizes().vec(), (std::vector<int64_t>{1, 8}));

  const auto gptq = pack(w, PackedFormat::gptq);
  ASSERT_EQ(gptq.at("qweight").sizes().vec(), (std::vector<int64_t>{1, 8}));
  for (int o = 0; o < 8; ++o) {
    uint32_t v = 0;
    for (int k = 0; k < 8; ++k) v |= static_cast<uint32_t>((o * 3 + k * 5) % 16) << (4 * k);
    EXPECT_EQ(gptq.at("qweight")[0][o].item<int32_t>(), word(v)) << "output column " << o;
  }
  uint32_t gz = 0;
  for (int k = 0; k < 8; ++k) gz |= static_cast<uint32_t>((k + 4 - 1) & 15) << (4 * k);  // stored as zero - 1
  EXPECT_EQ(gptq.at("qzeros")[0][0].item<int32_t>(), word(gz));
  EXPECT_TRUE(at::equal(gptq.at("g_idx"), at::zeros({8}, at::kInt)));

  // compressed-tensors: signed values shifted by 8 (so the stored nibble is
  // our unsigned code), inputs packed along each row, zero points packed
  // along the output dimension, scales [out, groups] in the model dtype.
  const auto ct = pack(w, PackedFormat::compressed_tensors, at::kBFloat16);
  ASSERT_EQ(ct.at("weight_packed").sizes().vec(), (std::vector<int64_t>{8, 1}));
  for (int o = 0; o < 8; ++o) {
    uint32_t v = 0;
    for (int k = 0; k < 8; ++k) v |= static_cast<uint32_t>(((o * 3 + k * 5) % 16 - 8) + 8) << (4 * k);
    EXPECT_EQ(ct.at("weight_packed")[o][0].item<int32_t>(), word(v)) << "output row " << o;
  }
  ASSERT_EQ(ct.at("weight_zero_point").sizes().vec(), (std::vector<int64_t>{1, 1}));
  uint32_t cz = 0;
  for (int k = 0; k < 8; ++k) cz |= static_cast<uint32_t>((k + 4 - 8) + 8) << (4 * k);
  EXPECT_EQ(ct.at("weight_zero_point")[0][0].item<int32_t>(), word(cz));
  EXPECT_EQ(ct.at("weight_scale").scalar_type(), at::kBFloat16);
  EXPECT_EQ(ct.at("weight_scale").sizes().vec(), (std::vector<int64_t>{8, 1}));
  EXPECT_EQ(ct.at("weight_shape")[0].item<int64_t>(), 8);
  EXPECT_EQ(ct.at("weight_shape")[1].item<int64_t>(), 8);
  EXPECT_EQ(ct.count("weight_g_idx"), 0u);

  // Symmetric (every zero at 8): no zero points stored. 8 bits: 4 per word.
  numeric::IntWeight sym{codes, scales, at::full({8, 1}, 8, at::kInt), at::zeros({8}, at::kInt), 4, 8};
  EXPECT_EQ(pack(sym, PackedFormat::compressed_tensors).count("weight_zero_point"), 0u);
  numeric::IntWeight w8{codes * 16, scales, at::full({8, 1}, 128, at::kInt), at::zeros({8}, at::kInt), 8, 8};
  const auto ct8 = pack(w8, PackedFormat::compressed_tensors);
  ASSERT_EQ(ct8.at("weight_packed").sizes().vec(), (std::vector<int64_t>{8, 2}));
  uint32_t v8 = 0;
  for (int k = 0; k < 4; ++k) v8 |= static_cast<uint32_t>(((3 * 1 + (4 + k) * 5) % 16) * 16) << (8 * k);
  EXPECT_EQ(ct8.at("weight_packed")[1][1].item<int32_t>(), word(v8)) << "row 1, inputs 4..7";
}

}  // namespace
}  // namespace qjobs::exporter

namespace qjobs::quant {
namespace {

// Issue 14: for a packed export HQQ rounds its zero points as its last step;
// the integer form is exactly the weight it reports, and the rounding costs
// something (measured, never free) but stays within the quantization step.
TEST(Hqq, IntegerZeroPointsAreWhatIsPacked) {
  at::manual_seed(4);
  const auto w = at::randn({32, 128}) * at::rand({1, 128}) * 2;
  const auto r = hqq_quantize(w, 4, 64, true);
  ASSERT_TRUE(r.ints.codes.defined());
  EXPECT_TRUE(at::allclose(r.ints.dequantize(), r.weight, 1e-6, 1e-6));
  EXPECT_TRUE(at::equal(r.ints.zeros.to(at::kFloat), r.ints.zeros.to(at::kFloat).round()));
  const double real = (r.real_zero_weight - w).norm().item<double>(), rounded = (r.weight - w).norm().item<double>();
  EXPECT_NE(real, rounded);
  EXPECT_LT(rounded, 2 * real);
  // Packed as compressed-tensors, read back as the same weight.
  const auto t = exporter::pack(r.ints, exporter::PackedFormat::compressed_tensors, at::kFloat);
  EXPECT_EQ(t.at("weight_scale").sizes().vec(), (std::vector<int64_t>{32, 2}));
  EXPECT_TRUE(t.count("weight_zero_point"));
}

}  // namespace
}  // namespace qjobs::quant
