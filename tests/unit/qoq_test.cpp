// QoQ: the weight grid against values worked out by hand, the LMQuant
// keys as the algorithm reads them, and the algorithm's output (rotated
// tensors, untied head, activation and KV settings) loaded back.
#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>
#include <ATen/core/grad_mode.h>

#include "common/error.hpp"
#include "spec/job_spec.hpp"
#include "jobs/quant/layer_plan.hpp"
#include "jobs/model/checkpoint.hpp"
#include "jobs/model/llama_model.hpp"
#include "jobs/model/random_model.hpp"
#include "jobs/quant/qoq.hpp"
#include "jobs/quant/smoothquant.hpp"

namespace qjobs::quant {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

at::Tensor row(std::vector<float> v) { return at::tensor(v).reshape({1, -1}); }

TEST(QoqGrid, ProgressiveGroupByHand) {
  // Row max 119 -> s1 = 1. Group [-119, 0, 30, 119]: s2 = round(238 / 15) = 16,
  // zero = round(119 / 16) = 7, codes in [0, min(15, 7 + floor(127/16))] = [0, 14].
  // -119/16 = -7.44 -> -7 + 7 = 0 -> -112; 30/16 = 1.875 -> 2 + 7 = 9 -> 32; 119 -> 14 -> 112.
  const auto w = row({-119, 0, 30, 119});
  const auto wg = WeightGrid::for_weight(w, 4, true);
  EXPECT_FLOAT_EQ(wg.s1.item<float>(), 1.0f);
  const auto g = wg.grid(w, at::Tensor());
  EXPECT_FLOAT_EQ(g.scale.item<float>(), 16.0f);
  EXPECT_FLOAT_EQ(g.zero.item<float>(), 7.0f);
  EXPECT_FLOAT_EQ(g.lo.item<float>(), 0.0f);
  EXPECT_FLOAT_EQ(g.hi.item<float>(), 14.0f);
  const auto q = wg.codes(w, g);
  EXPECT_TRUE(at::equal(q, row({0, 7, 9, 14})));
  EXPECT_TRUE(at::equal((q - g.zero) * g.scale, row({-112, 0, 32, 112})));
  // The integer scale times s1: a row of max 1.19 has s1 = 0.01, the same codes.
  const auto w2 = w / 100;
  const auto wg2 = WeightGrid::for_weight(w2, 4, true);
  EXPECT_TRUE(at::equal(wg2.codes(w2, wg2.grid(w2, at::Tensor())), q));
  // Clipping to 50%: [-59.5, 59.5] -> s2 = round(119 / 15) = 8, zero = round(59.5 / 8) = 7.
  const auto gc = wg.grid(w, at::full({1, 1}, 0.5));
  EXPECT_FLOAT_EQ(gc.scale.item<float>(), 8.0f);
  EXPECT_FLOAT_EQ(gc.zero.item<float>(), 7.0f);
}

TEST(QoqGrid, FloatScaleGroupByHand) {
  // [-1, 0.5, 2], 4 bits: scale 3/15 = 0.2, zero 5; 0.5/0.2 = 2.5 rounds to even 2 -> code 7 -> 0.4.
  const auto w = row({-1, 0.5f, 2});
  const auto wg = WeightGrid::for_weight(w, 4, false);
  const auto g = wg.grid(w, at::Tensor());
  const auto q = wg.codes(w, g);
  EXPECT_TRUE(at::equal(q, row({0, 7, 15})));
  EXPECT_TRUE(at::allclose((q - g.zero) * g.scale, row({-1, 0.4f, 2}), 0, 1e-6));
}

TEST(QoqConfig, NyuntamKeysAndPresets) {
  const auto spec = parse_job_spec(R"(MODEL: m
DATA_PATH: d.jsonl
ALGORITHM: LMQuant
llm:
  LMQuant:
    quant_type: gchn
    quant.smooth.xw.alpha: 0.05
    quant.smooth.xw.beta: 0.95
    quant.smooth.xw.strategy: Manual
    quant.smooth.yx.strategy: GridSearch
    quant.smooth.yx.beta: " -2"
    quant.ipts.static: true
)");
  ASSERT_TRUE(spec.spec) << spec.issues[0].message;
  const auto c = QoqConfig::from_lmquant(spec.spec->params);
  EXPECT_EQ(c.w_group, -1);  // gchn: per channel
  EXPECT_FALSE(c.progressive);
  EXPECT_EQ(c.kv_bits, 8);  // gchn as shipped
  EXPECT_EQ(c.a_bits, 8);
  EXPECT_TRUE(c.a_static);
  EXPECT_EQ(c.xw.strategy, "Manual");
  EXPECT_DOUBLE_EQ(c.xw.alpha, 0.05);
  EXPECT_DOUBLE_EQ(c.xw.beta, 0.95);
  EXPECT_EQ(c.yx.strategy, "GridSearch");
  EXPECT_DOUBLE_EQ(c.yx.beta, -2);
  const auto g128 = QoqConfig::from_lmquant(
      json{{"quant_type", "g128"}, {"quant", {{"opts", {{"dtype", "uint8"}}}, {"enable_smooth", false}}}});
  EXPECT_EQ(g128.w_group, 128);
  EXPECT_TRUE(g128.progressive);
  EXPECT_EQ(g128.kv_bits, 8);
  EXPECT_FALSE(g128.xw.enabled);
  EXPECT_FALSE(g128.yx.enabled);
  EXPECT_THROW(QoqConfig::from_lmquant(json{{"quant_type", "awq"}}), Error);
}

class QoqModel : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("qjobs_qoq_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    model::RandomModelOptions o;
    o.hidden = 64;
    o.intermediate = 192;
    o.layers = 2;
    o.heads = 4;
    o.kv_heads = 2;
    o.vocab = 96;
    o.init_std = 0.1;
    o.tie_embeddings = true;
    o.seed = 8;
    model::write_random_llama(dir_, o);
    ckpt_ = std::make_unique<model::Checkpoint>(model::Checkpoint::open(dir_));
    ids_ = at::randint(0, 96, {8, 32}, at::kLong);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Inputs for `algorithm` (LMQuant unless said) with `params`, planned as the pipeline plans them.
  QuantInputs inputs(const json& params, fs::path state = {}, const std::string& algorithm = "LMQuant") {
    QuantInputs in;
    in.ckpt = ckpt_.get();
    in.params = params;
    in.plan = plan_linears(algorithm, params, *in.ckpt);
    in.calibration = [this] { return ids_; };
    in.state_dir = std::move(state);
    in.progress = [](int64_t, int64_t, const std::string&) {};
    return in;
  }
  QuantOutput run(const json& params) { return LmQuantAlgorithm().run(inputs(params)); }
  // The model as the packaged checkpoint would load: tensors replaced and
  // added, the head untied, the recorded activation / KV quantization on.
  at::Tensor logits_of(const QuantOutput& o, const at::Tensor& ids) {
    auto m = model::LlamaModel::load(*ckpt_);
    if (o.config_patch.value("tie_word_embeddings", true) == false) m.untie();
    for (auto& [name, t] : m.parameters()) {
      if (o.replaced.count(name)) *t = o.replaced.at(name);
      if (o.added.count(name)) *t = o.added.at(name);
    }
    m.apply_simulated_quantization(o.quantization_config);
    at::NoGradGuard g;
    return m.forward(ids);
  }
  at::Tensor reference(const at::Tensor& ids) {
    at::NoGradGuard g;
    return model::LlamaModel::load(*ckpt_).forward(ids);
  }

  fs::path dir_;
  std::unique_ptr<model::Checkpoint> ckpt_;
  at::Tensor ids_;
};

TEST_F(QoqModel, EightBitWeightsAloneKeepTheRotatedModelsFunction) {
  // Every transform on, 8-bit weights, no activation or KV quantization:
  // what is left of the error is 8-bit rounding (about 2% of the logits of
  // this random model, as for plain RTN), so a mistake in storing the rotated
  // embedding, norms or untied head (an error near 100%) would show at once.
  const auto o =
      run({{"quant_type", "g128"},
           {"quant", {{"wgts", {{"dtype", "uint8"}}}, {"ipts", {{"dtype", "none"}}}, {"opts", {{"dtype", "none"}}}}}});
  EXPECT_EQ(o.config_patch["tie_word_embeddings"], false);
  ASSERT_TRUE(o.added.count("lm_head.weight"));
  EXPECT_TRUE(o.replaced.count("model.embed_tokens.weight"));
  EXPECT_TRUE(at::equal(o.replaced.at("model.norm.weight"), at::ones({64})));  // fused into lm_head
  EXPECT_TRUE(o.quantization_config["activations"].empty());
  const auto ids = at::randint(0, 96, {2, 24}, at::kLong);
  const auto ref = reference(ids);
  const double err = ((logits_of(o, ids) - ref).norm() / ref.norm()).item<double>();
  // Plain 8-bit round-to-nearest with every transform off, for scale.
  const auto plain =
      run({{"quant_type", "g128"},
           {"quant",
            {{"wgts", {{"dtype", "uint8"}, {"enable_kernel_gptq", false}, {"enable_calib_range", false}}},
             {"ipts", {{"dtype", "none"}}},
             {"opts", {{"dtype", "none"}}},
             {"enable_rotation", false},
             {"enable_smooth", false},
             {"enable_reorder", false}}}});
  EXPECT_TRUE(plain.added.empty());
  const double plain_err = ((logits_of(plain, ids) - ref).norm() / ref.norm()).item<double>();
  EXPECT_LT(err, 1.5 * plain_err) << err << " vs plain 8-bit RTN " << plain_err;
  EXPECT_LT(plain_err, 0.05);
}

TEST_F(QoqModel, W4A8Kv4RecordsEveryLinearAndTheCacheAndStaysClose) {
  const auto o = run({{"quant_type", "g128"}});
  EXPECT_EQ(o.quantization_config["quant_method"], "qoq");
  const auto& acts = o.quantization_config["activations"];
  EXPECT_EQ(acts.size(), 14u);  // 2 layers x 7 Linears
  for (const auto& [name, a] : acts.items()) {
    EXPECT_EQ(a["kind"], "int_token") << name;
    EXPECT_EQ(a["bits"], 8) << name;
  }
  EXPECT_EQ(o.quantization_config["kv_cache"]["kind"], "int");
  EXPECT_EQ(o.quantization_config["kv_cache"]["bits"], 4);
  // uint4 codes, and (progressive) every group scale an integer multiple of its row's s1.
  const auto& w = o.int_weights.at("model.layers.1.mlp.down_proj");
  EXPECT_GE(w.codes.min().item<int>(), 0);
  EXPECT_LE(w.codes.max().item<int>(), 15);
  // 192 inputs at g128 are ragged: per output channel in every export form,
  // so the fake_quant twin is the packed model (issue 27; no 128 + 64 groups).
  EXPECT_EQ(w.group_size, 192);
  EXPECT_EQ(w.scales.size(1), 1);
  EXPECT_EQ(o.int_weights.at("model.layers.1.mlp.up_proj").scales.size(1), 1) << "64 inputs: one group";
  const auto ids = at::randint(0, 96, {2, 24}, at::kLong);
  const auto ref = reference(ids);
  const double err = ((logits_of(o, ids) - ref).norm() / ref.norm()).item<double>();
  EXPECT_LT(err, 0.5) << err;
  EXPECT_GT(err, 1e-3) << "W4A8KV4 cannot be exact";
}

TEST_F(QoqModel, PresetsDelegateToSmoothQuantAwqAndGptq) {
  const auto sq = run({{"quant_type", "sq_static"}});
  EXPECT_EQ(sq.quantization_config["quant_method"], "smoothquant");
  EXPECT_EQ(sq.quantization_config["act"], "static");
  EXPECT_EQ(sq.quantization_config["lmquant_preset"], "sq_static");
  const auto gptq = run({{"quant_type", "gptq"}});
  EXPECT_EQ(gptq.quantization_config["quant_method"], "gptq");
  EXPECT_EQ(gptq.quantization_config["group_size"], 128);
}

TEST_F(QoqModel, MixedActivationPrecisionFollowsTheOverrides) {
  // Qualcomm-style: 16-bit activations, 8-bit where the pattern says so.
  const auto sq = [&](const json& extra) {
    json p = {{"alpha", 0.5}, {"ACT", "dynamic"}};
    p.merge_patch(extra);
    return SmoothQuantAlgorithm().run(inputs(p, {}, "SmoothQuant"));
  };
  const auto mixed = sq({{"A_BIT", 16}, {"LAYER_OVERRIDES", json::array({{{"pattern", "*.mlp.*"}, {"A_BIT", 8}}})}});
  const auto& acts = mixed.quantization_config["activations"];
  EXPECT_EQ(acts["model.layers.0.self_attn.q_proj"]["bits"], 16);
  EXPECT_EQ(acts["model.layers.1.self_attn.o_proj"]["bits"], 16);
  EXPECT_EQ(acts["model.layers.0.mlp.down_proj"]["bits"], 8);
  EXPECT_EQ(acts["model.layers.1.mlp.gate_proj"]["bits"], 8);
  const auto ids = at::randint(0, 96, {2, 24}, at::kLong);
  const auto ref = reference(ids);
  const auto rel = [](const at::Tensor& a, const at::Tensor& b) { return ((a - b).norm() / b.norm()).item<double>(); };
  // Same weights in all three (W8 after the same smoothing): only the activation bits differ.
  const auto l16 = logits_of(sq({{"A_BIT", 16}}), ids), l8 = logits_of(sq({{"A_BIT", 8}}), ids),
             lm = logits_of(mixed, ids);
  EXPECT_LT(rel(l16, ref), rel(l8, ref));
  // The mixed model is neither of the uniform ones. (Its error need not lie
  // between theirs: rounding errors of different Linears can cancel.)
  EXPECT_GT(rel(lm, l16), 1e-4);
  EXPECT_GT(rel(lm, l8), 1e-4);
}

TEST_F(QoqModel, InterruptedRunResumesAtTheNextBlockWithTheSameResult) {
  const json p = {{"quant_type", "g128"}};
  const auto full = run(p);
  auto in = inputs(p, dir_ / "state");
  in.progress = [](int64_t done, int64_t, const std::string&) {
    if (done == 1) throw Error(ErrorKind::cancelled, "killed after block 1");
  };
  EXPECT_THROW(LmQuantAlgorithm().run(in), Error);
  const auto resumed = LmQuantAlgorithm().run(inputs(p, dir_ / "state"));
  EXPECT_EQ(resumed.resumed_blocks, 1);
  ASSERT_EQ(resumed.replaced.size(), full.replaced.size());
  for (const auto& [name, t] : full.replaced) EXPECT_TRUE(at::equal(resumed.replaced.at(name), t)) << name;
  EXPECT_TRUE(at::equal(resumed.added.at("lm_head.weight"), full.added.at("lm_head.weight")));
  EXPECT_EQ(resumed.quantization_config, full.quantization_config);
}

}  // namespace
}  // namespace qjobs::quant
