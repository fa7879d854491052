// The families of ../shared/reference/families quantized through their
// tables: RTN, AutoAWQ and GPTQ at W4 g32 judged on the logits of the
// reference's long input against the float model, and the mixture-of-
// experts calibration (tokens per expert, the all-tokens fallback).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>
#include <ATen/core/grad_mode.h>

#include "common/error.hpp"
#include "jobs/quant/layer_plan.hpp"
#include "jobs/model/checkpoint.hpp"
#include "jobs/model/llama_model.hpp"
#include "jobs/model/random_model.hpp"
#include "jobs/model/safetensors.hpp"
#include "jobs/quant/awq.hpp"
#include "jobs/quant/calibration.hpp"
#include "jobs/quant/gptq.hpp"
#include "jobs/quant/rtn.hpp"
#include "unit/reference.hpp"

namespace qjobs::quant {
namespace {
using nlohmann::json;

// config.json is untrusted (the server reads it at submission): values that
// would divide by zero, size a loop or an allocation, or have the wrong type
// are refused with the key named, before anything is sized by them.
TEST(FamilyConfig, HostileValuesAreRefusedNamingTheKey) {
  const json base = {{"architectures", {"LlamaForCausalLM"}},
                     {"hidden_size", 64},
                     {"intermediate_size", 128},
                     {"num_hidden_layers", 4},
                     {"num_attention_heads", 4},
                     {"vocab_size", 512}};
  const auto refused = [&](json j, const std::string& words) {
    try {
      model::ModelConfig::from_json(j);
      ADD_FAILURE() << "accepted " << j.dump();
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::invalid_input);
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  EXPECT_NO_THROW(model::ModelConfig::from_json(base));
  auto j = base;
  j["num_attention_heads"] = 0;
  refused(j, "'num_attention_heads' is 0");
  j = base;
  j["num_key_value_heads"] = 0;
  refused(j, "'num_key_value_heads' is 0");
  j = base;
  j["num_hidden_layers"] = int64_t{1} << 40;
  refused(j, "'num_hidden_layers'");
  j = base;
  j["num_hidden_layers"] = 18446744073709551615ull;
  refused(j, "'num_hidden_layers'");
  j = base;
  j["hidden_size"] = 2;  // head_dim 0
  refused(j, "smaller than num_attention_heads");
  j = base;
  j["tie_word_embeddings"] = "yes";
  refused(j, "config.json");
  j = base;
  j["eos_token_id"] = {"</s>"};
  refused(j, "eos_token_id");
  j = base;
  j["architectures"] = {"MixtralForCausalLM"};
  j["num_local_experts"] = 8;
  j["num_experts_per_tok"] = 0;
  refused(j, "'num_experts_per_tok' is 0");
  j["num_experts_per_tok"] = 9;
  refused(j, "between 1 and the number of experts (8)");
  j = base;
  j["architectures"] = {"Qwen2MoeForCausalLM"};
  j["num_experts"] = 4;
  j["num_experts_per_tok"] = 2;
  j["moe_intermediate_size"] = 32;
  j["mlp_only_layers"] = json::array();
  for (int i = 0; i < 5; ++i) j["mlp_only_layers"].push_back(i);
  refused(j, "at most num_hidden_layers");
  EXPECT_THROW(model::ModelConfig::from_json(json::array({1, 2})), Error);
}

// What the tables read from config.json, hand-checked against the
// definitions in the reference README (section 7); no reference files needed.
TEST(FamilyConfig, TablesReadTheirKeysAndRefuseWhatIsNotBuilt) {
  const json base = {{"hidden_size", 64},        {"intermediate_size", 128}, {"num_hidden_layers", 4},
                     {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"vocab_size", 512},
                     {"sliding_window", 32}};
  auto j = base;
  j["architectures"] = {"Gemma2ForCausalLM"};
  j["hidden_activation"] = "gelu_pytorch_tanh";
  j["query_pre_attn_scalar"] = 32;
  j["attn_logit_softcapping"] = 2.0;
  auto c = model::ModelConfig::from_json(j);
  EXPECT_EQ(c.family->arch, model::Arch::gemma2);
  EXPECT_TRUE(c.tie_word_embeddings);    // Gemma2Config's default
  EXPECT_DOUBLE_EQ(c.embed_scale, 8.0);  // sqrt(64)
  EXPECT_DOUBLE_EQ(c.norm_offset, 1.0);
  EXPECT_DOUBLE_EQ(c.attn_scale, 1.0 / std::sqrt(32.0));
  EXPECT_DOUBLE_EQ(c.attn_softcap, 2.0);
  EXPECT_EQ(c.final_softcap, 0.0);
  EXPECT_EQ(c.activation, model::Activation::gelu_tanh);
  EXPECT_EQ(std::vector<bool>({c.slides(0), c.slides(1), c.slides(2), c.slides(3)}),
            std::vector<bool>({true, false, true, false}));

  j = base;
  j["architectures"] = {"Qwen2MoeForCausalLM"};
  j["num_experts"] = 8;
  j["num_experts_per_tok"] = 2;
  j["moe_intermediate_size"] = 32;
  j["decoder_sparse_step"] = 2;
  j["mlp_only_layers"] = {3};
  c = model::ModelConfig::from_json(j);
  // Sparse iff not in mlp_only_layers and (L + 1) % step == 0: layers 1 only (3 is listed dense).
  EXPECT_EQ(std::vector<bool>({c.sparse(0), c.sparse(1), c.sparse(2), c.sparse(3)}),
            std::vector<bool>({false, true, false, false}));
  EXPECT_FALSE(c.moe.norm_topk_prob);
  EXPECT_FALSE(c.sliding_window.has_value()) << "Qwen slides only with use_sliding_window";
  // A dense Qwen2-MoE layer has mlp.{gate,up,down}_proj; a sparse one routes.
  const auto names = model::quantized_linear_weights(c);
  EXPECT_NE(std::find(names.begin(), names.end(), "model.layers.0.mlp.down_proj.weight"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "model.layers.1.mlp.experts.7.down_proj.weight"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "model.layers.1.mlp.shared_expert.up_proj.weight"), names.end());
  EXPECT_EQ(model::full_precision_linears(c),
            std::vector<std::string>({"model.layers.1.mlp.gate", "model.layers.1.mlp.shared_expert_gate"}));

  j = base;
  j["architectures"] = {"Phi3ForCausalLM"};
  j["partial_rotary_factor"] = 0.75;
  EXPECT_THROW(model::ModelConfig::from_json(j), Error);
  j = base;
  j["architectures"] = {"FalconForCausalLM"};
  try {
    model::ModelConfig::from_json(j);
    ADD_FAILURE() << "an unknown architecture loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Qwen3ForCausalLM"), std::string::npos) << e.what();
  }
}

class FamilyQuant : public ::testing::TestWithParam<std::string> {
 protected:
  QuantInputs inputs(const std::string& algorithm, const model::Checkpoint& ckpt, const at::Tensor& calib,
                     json params) {
    QuantInputs in;
    in.ckpt = &ckpt;
    in.params = std::move(params);
    in.plan = plan_linears(algorithm, in.params, ckpt);
    in.calibration = [calib] { return calib; };
    in.progress = [](int64_t, int64_t, const std::string&) {};
    return in;
  }
};

// Relative error of the logits with `replaced` swapped in, against `ref`.
double logit_error(const model::Checkpoint& ckpt, const QuantOutput& q, const at::Tensor& ids, const at::Tensor& ref) {
  auto m = model::LlamaModel::load(ckpt);
  for (auto& [name, t] : m.parameters())
    if (q.replaced.count(name)) *t = q.replaced.at(name);
  m.retie();
  at::NoGradGuard g;
  return ((m.forward(ids) - ref).norm() / ref.norm()).item<double>();
}

TEST_P(FamilyQuant, AwqAndGptqW4MatchOrBeatRtnOnTheLogits) {
  QJOBS_REQUIRE_REFERENCE(ref);
  const auto dir = ref / "families" / GetParam();
  const auto ckpt = model::Checkpoint::open(dir);
  const auto ids = model::SafetensorsFile::open(dir / "expected.safetensors").tensor("input_ids_long");
  const auto cfg = model::ModelConfig::from_json(ckpt.config());
  at::manual_seed(17);
  const auto calib = at::randint(0, cfg.vocab, {32, 64}, at::kLong);  // 2048 random tokens: the weights are random too
  const json p = {{"W_BIT", 4}, {"Q_GROUP_SIZE", 32}, {"ZERO_POINT", true}};
  const auto float_logits = model::LlamaModel::load(ckpt).forward(ids);
  const auto rtn = RtnAlgorithm().run(inputs("RTN", ckpt, calib, p));
  const auto awq = AwqAlgorithm().run(inputs("AutoAWQ", ckpt, calib, p));
  const auto gptq = GptqAlgorithm().run(inputs("GPTQ", ckpt, calib, p));
  const double e_rtn = logit_error(ckpt, rtn, ids, float_logits);
  const double e_awq = logit_error(ckpt, awq, ids, float_logits);
  const double e_gptq = logit_error(ckpt, gptq, ids, float_logits);
  RecordProperty("rtn", std::to_string(e_rtn));
  RecordProperty("awq", std::to_string(e_awq));
  RecordProperty("gptq", std::to_string(e_gptq));
  std::printf("%s W4 g32 logit error: RTN %.5f AWQ %.5f GPTQ %.5f\n", GetParam().c_str(), e_rtn, e_awq, e_gptq);
  EXPECT_GT(e_rtn, 1e-3) << "4-bit rounding must show";
  EXPECT_LE(e_awq, e_rtn * 1.02) << "awq " << e_awq << " rtn " << e_rtn;
  EXPECT_LT(e_gptq, e_rtn) << "gptq " << e_gptq << " rtn " << e_rtn;
  // Every quantized Linear of the table has an integer form, and nothing else does.
  std::set<std::string> want;
  for (const auto& w : model::quantized_linear_weights(cfg)) want.insert(w.substr(0, w.size() - 7));
  for (const auto* q : {&rtn, &awq, &gptq}) {
    std::set<std::string> got;
    for (const auto& [name, w] : q->int_weights) got.insert(name);
    EXPECT_EQ(got, want);
  }
  // Routers and the shared expert's gate stay in full precision.
  if (!cfg.fam().names.router.empty()) {
    EXPECT_EQ(want.count("model.layers.0." + cfg.fam().names.router), 0u);
    EXPECT_TRUE(want.count("model.layers.0." + cfg.fam().names.expert_prefix + "0." + cfg.fam().names.expert_down));
  }
}

// The torch-free list of a model's Linears (what the server plans and
// checks exports with) is the model's own, in order, with the widths the
// checkpoint stores.
TEST_P(FamilyQuant, DecoderLinearsAreTheModelsLinearsWithTheirStoredWidths) {
  QJOBS_REQUIRE_REFERENCE(ref);
  const auto ckpt = model::Checkpoint::open(ref / "families" / GetParam());
  const auto cfg = model::ModelConfig::from_json(ckpt.config());
  const auto names = model::quantized_linear_weights(cfg);
  const auto linears = model::decoder_linears(cfg);
  ASSERT_EQ(linears.size(), names.size());
  for (std::size_t i = 0; i < names.size(); ++i) {
    EXPECT_EQ(linears[i].name + ".weight", names[i]);
    const auto& shape = ckpt.info(names[i]).shape;
    EXPECT_EQ(linears[i].out, shape.front()) << names[i];
    EXPECT_EQ(linears[i].in, shape.back()) << names[i];
  }
}

INSTANTIATE_TEST_SUITE_P(Families, FamilyQuant,
                         ::testing::Values("tiny-mixtral", "tiny-qwen2-moe", "tiny-phi3", "tiny-gemma2", "tiny-qwen3"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (auto& c : n)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

// W4 g32 asymmetric over calibration windows `ids`, without progress.
QuantInputs w4_g32_inputs(const model::Checkpoint& ckpt, const at::Tensor& ids) {
  QuantInputs in;
  in.ckpt = &ckpt;
  in.params = {{"W_BIT", 4}, {"Q_GROUP_SIZE", 32}, {"ZERO_POINT", true}};
  in.plan = plan_linears("GPTQ", in.params, ckpt);
  in.calibration = [ids] { return ids; };
  in.progress = [](int64_t, int64_t, const std::string&) {};
  return in;
}

// The random Mixtral the calibration benchmark measures (no reference
// files): read as the Mixtral table, every expert's Linears quantized, and
// the tokens per expert summing to top-k picks of every calibration token.
TEST(MoeCalibration, RandomMixtralIsTheMixtralTableAndEveryExpertIsCalibrated) {
  const auto dir = std::filesystem::temp_directory_path() / ("qjobs_random_mixtral_" + std::to_string(::getpid()));
  const model::RandomModelOptions o{.hidden = 64, .intermediate = 96, .layers = 2, .experts = 6, .top_k = 2};
  model::write_random_llama(dir, o);
  const auto ckpt = model::Checkpoint::open(dir);
  const auto cfg = model::ModelConfig::from_json(ckpt.config());
  EXPECT_EQ(cfg.fam().arch, model::Arch::mixtral);
  EXPECT_EQ(cfg.moe.experts, 6);
  EXPECT_EQ(model::quantized_linear_weights(cfg).size(), static_cast<std::size_t>(2 * (4 + 6 * 3)));
  const auto ids = at::randint(0, o.vocab, {4, 32}, at::kLong);
  const auto out = GptqAlgorithm().run(w4_g32_inputs(ckpt, ids));
  EXPECT_EQ(out.int_weights.size(), model::quantized_linear_weights(cfg).size());
  ASSERT_EQ(out.experts.size(), 2u);
  for (const auto& [block, e] : out.experts.items()) {
    ASSERT_EQ(e["tokens"].size(), 6u) << block;
    int64_t total = 0;
    for (const auto& t : e["tokens"]) total += t.get<int64_t>();
    EXPECT_EQ(total, 2 * ids.numel()) << block;
  }
  std::filesystem::remove_all(dir);
}

TEST(MoeCalibration, TokensPerExpertAreTheRoutersTopKPicksAndStarvedExpertsSeeEveryToken) {
  QJOBS_REQUIRE_REFERENCE(ref);
  // The reference's own counts: top-k picks of input_ids_long per layer.
  for (const std::string name : {"tiny-mixtral", "tiny-qwen2-moe"}) {
    const auto dir = ref / "families" / name;
    const auto ckpt = model::Checkpoint::open(dir);
    const auto expected = json::parse(std::ifstream(dir / "expected.json"));
    const auto ids = model::SafetensorsFile::open(dir / "expected.safetensors").tensor("input_ids_long");
    const auto out = GptqAlgorithm().run(w4_g32_inputs(ckpt, ids));
    const auto& counts = expected["sets"]["input_ids_long"]["per_expert_token_counts"];
    const auto cfg = model::ModelConfig::from_json(ckpt.config());
    ASSERT_EQ(out.experts.size(), counts.size()) << name;
    for (const auto& [layer, want] : counts.items()) {
      const auto& got = out.experts.at("model.layers." + layer + ".");
      // Block 0 reads the embeddings, as the reference did; later blocks read
      // the quantized blocks' outputs, so only their total is the reference's.
      if (layer == "0") EXPECT_EQ(got["tokens"], want) << name << " layer " << layer;
      int64_t total = 0;
      for (const auto& t : got["tokens"]) total += t.get<int64_t>();
      EXPECT_EQ(total, cfg.moe.top_k * ids.numel()) << name << " layer " << layer;
      json fallback = json::array();
      for (std::size_t e = 0; e < got["tokens"].size(); ++e)
        if (got["tokens"][e].get<int64_t>() < cfg.hidden) fallback.push_back(e);
      EXPECT_EQ(got["fallback"], fallback) << name << " layer " << layer;
      EXPECT_EQ(got["min_tokens"], cfg.hidden);
    }
    // What the engine hands an algorithm: an expert's routed tokens, or all
    // of the block's when they are too few.
    auto m = model::LlamaModel::load(ckpt);
    CalibrationEngine engine(m, ids, 8, {}, "");
    const auto& layer0 = counts["0"];
    const auto& n = cfg.fam().names;
    for (std::size_t e = 0; e < layer0.size(); ++e) {
      const std::string gate = n.expert_prefix + std::to_string(e) + "." + n.expert_gate;
      const std::string down = n.expert_prefix + std::to_string(e) + "." + n.expert_down;
      const auto xs = engine.capture_inputs(0, {gate, down});
      const int64_t routed = layer0[e].get<int64_t>();
      const int64_t rows = routed < cfg.hidden ? ids.numel() : routed;
      EXPECT_EQ(xs.at(gate).size(0), rows) << name << " expert " << e;
      EXPECT_EQ(xs.at(down).size(0), rows) << name << " expert " << e;
      EXPECT_EQ(xs.at(down).size(1), cfg.moe.expert_intermediate);
    }
  }
}

}  // namespace
}  // namespace qjobs::quant
