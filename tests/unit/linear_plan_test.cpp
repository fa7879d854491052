// The per-Linear plan (spec/linear_plan.hpp), the algorithms' weight
// settings on their catalog rows, the family tables' Linears without
// libtorch (decoder_linears), and the export rules that use them
// (spec/export_formats.hpp). Widths are computed by hand from the configs.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "jobs/model/model_config.hpp"
#include "spec/algorithm_catalog.hpp"
#include "spec/export_formats.hpp"
#include "spec/linear_plan.hpp"

namespace qjobs {
namespace {

using nlohmann::json;

// The example model's shape: hidden 128, 4 heads of 32, 2 KV heads, MLP 352.
json llama_config(int layers = 2) {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"model_type", "llama"},
          {"hidden_size", 128},
          {"intermediate_size", 352},
          {"num_attention_heads", 4},
          {"num_key_value_heads", 2},
          {"head_dim", 32},
          {"num_hidden_layers", layers},
          {"vocab_size", 1024},
          {"max_position_embeddings", 2048}};
}

std::vector<LinearShape> shapes_of(const json& config) {
  std::vector<LinearShape> out;
  for (const auto& l : model::decoder_linears(model::ModelConfig::from_json(config)))
    out.push_back({l.name, l.in, l.out});
  return out;
}

quant::WeightScheme weights_of(const std::string& algorithm, const json& section) {
  return find_algorithm(algorithm)->weights(section);
}

TEST(DecoderLinears, LlamaHasSevenLinearsPerLayerWithTheirWidths) {
  const auto l = model::decoder_linears(model::ModelConfig::from_json(llama_config(2)));
  ASSERT_EQ(l.size(), 14u);
  const std::vector<std::tuple<std::string, int64_t, int64_t>> want = {
      {"model.layers.0.self_attn.q_proj", 128, 128}, {"model.layers.0.self_attn.k_proj", 128, 64},
      {"model.layers.0.self_attn.v_proj", 128, 64},  {"model.layers.0.self_attn.o_proj", 128, 128},
      {"model.layers.0.mlp.gate_proj", 128, 352},    {"model.layers.0.mlp.up_proj", 128, 352},
      {"model.layers.0.mlp.down_proj", 352, 128}};
  for (std::size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(l[i].name, std::get<0>(want[i]));
    EXPECT_EQ(l[i].in, std::get<1>(want[i])) << l[i].name;
    EXPECT_EQ(l[i].out, std::get<2>(want[i])) << l[i].name;
  }
  EXPECT_EQ(l[7].name, "model.layers.1.self_attn.q_proj");
}

TEST(DecoderLinears, FusedAndExpertLinearsComeFromTheFamilyTable) {
  json phi3 = llama_config(1);
  phi3["architectures"] = {"Phi3ForCausalLM"};
  phi3["model_type"] = "phi3";
  const auto p = model::decoder_linears(model::ModelConfig::from_json(phi3));
  ASSERT_EQ(p.size(), 4u);  // qkv, o, gate_up, down
  EXPECT_EQ(p[0].name, "model.layers.0.self_attn.qkv_proj");
  EXPECT_EQ(p[0].out, 4 * 32 + 2 * 2 * 32);
  EXPECT_EQ(p[1].name, "model.layers.0.self_attn.o_proj");
  EXPECT_EQ(p[2].name, "model.layers.0.mlp.gate_up_proj");
  EXPECT_EQ(p[2].out, 2 * 352);
  EXPECT_EQ(p[3].name, "model.layers.0.mlp.down_proj");
  EXPECT_EQ(p[3].in, 352);

  json mixtral = llama_config(1);
  mixtral["architectures"] = {"MixtralForCausalLM"};
  mixtral["model_type"] = "mixtral";
  mixtral["num_local_experts"] = 3;
  mixtral["num_experts_per_tok"] = 2;
  const auto m = model::decoder_linears(model::ModelConfig::from_json(mixtral));
  ASSERT_EQ(m.size(), 4u + 3 * 3);  // q k v o, then w1 w3 w2 per expert; the router is not quantized
  EXPECT_EQ(m[4].name, "model.layers.0.block_sparse_moe.experts.0.w1");
  EXPECT_EQ(m[6].name, "model.layers.0.block_sparse_moe.experts.0.w2");
  EXPECT_EQ(m[6].in, 352);
  EXPECT_EQ(m.back().name, "model.layers.0.block_sparse_moe.experts.2.w2");
}

TEST(LinearPlan, FirstMatchingOverrideWinsAndRaggedWidthsArePerChannel) {
  const json section = {{"W_BIT", 4},
                        {"Q_GROUP_SIZE", 128},
                        {"ZERO_POINT", false},
                        {"LAYER_OVERRIDES",
                         {{{"pattern", "model.layers.0.*"}, {"W_BIT", 8}, {"Q_GROUP_SIZE", 32}},
                          {{"pattern", "*.self_attn.o_proj"}, {"SKIP", true}},
                          {{"pattern", "model.layers.0.mlp.up_proj"}, {"W_BIT", 2}}}}};
  const LinearPlan plan(weights_of("RTN", section), shapes_of(llama_config(2)));
  ASSERT_EQ(plan.linears().size(), 14u);
  // Layer 0: the first entry (8 bits, g32) for every Linear, o_proj included; 352 % 32 == 0.
  for (const auto& kind : {"self_attn.q_proj", "self_attn.o_proj", "mlp.up_proj", "mlp.down_proj"}) {
    const auto& s = plan.at(std::string("model.layers.0.") + kind);
    EXPECT_FALSE(s.skip) << kind;
    EXPECT_EQ(s.bits, 8) << kind;
    EXPECT_EQ(s.group_size, 32) << kind;
    EXPECT_FALSE(s.zero_point) << kind;
    EXPECT_FALSE(s.ragged) << kind;
  }
  EXPECT_TRUE(plan.at("model.layers.1.self_attn.o_proj").skip);
  // Layer 1: the section's 4 bits g128; down_proj reads 352 > 128 columns, not a multiple: per channel.
  EXPECT_EQ(plan.at("model.layers.1.self_attn.q_proj").group_size, 128);  // 128 columns: one group
  EXPECT_FALSE(plan.at("model.layers.1.self_attn.q_proj").ragged);
  EXPECT_EQ(plan.at("model.layers.1.mlp.down_proj").group_size, -1);
  EXPECT_TRUE(plan.at("model.layers.1.mlp.down_proj").ragged);
  EXPECT_EQ(plan.ragged(), std::vector<std::string>{"model.layers.1.mlp.down_proj"});
  EXPECT_THROW(plan.at("model.layers.2.mlp.down_proj"), Error);
  // A group wider than the Linear is one group, not a ragged one.
  const LinearPlan wide(weights_of("RTN", {{"Q_GROUP_SIZE", 512}}), shapes_of(llama_config(1)));
  EXPECT_EQ(wide.at("model.layers.0.mlp.down_proj").group_size, 512);
  EXPECT_TRUE(wide.ragged().empty());
}

TEST(LinearPlan, EachAlgorithmRowStatesItsOwnWeightSettings) {
  // HQQ's own default group is 64, not the weight-only 128.
  EXPECT_EQ(weights_of("HQQ", json::object()).group_size, 64);
  // SequentialMSE is weight-only unless A_BIT is set; an override may set it per Linear.
  EXPECT_EQ(weights_of("SequentialMSE", json::object()).a_bits, 0);
  const auto seq =
      weights_of("SequentialMSE", {{"A_BIT", 16}, {"LAYER_OVERRIDES", {{{"pattern", "*down_proj"}, {"A_BIT", 8}}}}});
  EXPECT_EQ(scheme_for(seq, "model.layers.0.mlp.up_proj").a_bits, 16);
  EXPECT_EQ(scheme_for(seq, "model.layers.0.mlp.down_proj").a_bits, 8);
  // LMQuant: QoQ's g128 / gchn groups, deepcompressor's group_size and dtypes, AWQ's defaults for the awq preset.
  EXPECT_EQ(weights_of("LMQuant", {{"quant_type", "g128"}}).group_size, 128);
  EXPECT_EQ(weights_of("LMQuant", {{"quant_type", "gchn"}}).group_size, -1);
  const auto g64 = weights_of(
      "LMQuant", {{"quant_type", "g128"},
                  {"quant", {{"wgts", {{"group_size", 64}, {"dtype", "uint8"}}}, {"ipts", {{"dtype", "sint16"}}}}}});
  EXPECT_EQ(g64.group_size, 64);
  EXPECT_EQ(g64.bits, 8);
  EXPECT_EQ(g64.a_bits, 16);
  EXPECT_EQ(weights_of("LMQuant", {{"quant_type", "awq"}}).bits, 4);
  EXPECT_EQ(weights_of("LMQuant", {{"quant_type", "awq"}}).group_size, 128);
  // A value the algorithm cannot use is refused by the row, naming the key.
  try {
    weights_of("LMQuant", {{"quant_type", "g128"}, {"quant", {{"wgts", {{"dtype", "sint4"}}}}}});
    ADD_FAILURE() << "sint4 weights were accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("quant.wgts.dtype"), std::string::npos) << e.what();
  }
  // FP8 quantizes every Linear; NVFP4 keeps the ones its overrides SKIP.
  EXPECT_TRUE(weights_of("FP8", json::object()).overrides.empty());
  const auto fp4 = weights_of("NVFP4", {{"LAYER_OVERRIDES", {{{"pattern", "*.mlp.down_proj"}, {"SKIP", true}}}}});
  EXPECT_TRUE(scheme_for(fp4, "model.layers.3.mlp.down_proj").skip);
  EXPECT_FALSE(scheme_for(fp4, "model.layers.3.mlp.up_proj").skip);
}

TEST(ExportShapes, ExpertLinearsAreNamedFromTheFamilyTable) {
  json mixtral = llama_config(2);
  mixtral["architectures"] = {"MixtralForCausalLM"};
  mixtral["model_type"] = "mixtral";
  mixtral["num_local_experts"] = 4;
  mixtral["num_experts_per_tok"] = 2;
  const auto findings =
      check_export_shapes("RTN", "compressed-tensors", {{"W_BIT", 4}, {"Q_GROUP_SIZE", 128}}, mixtral);
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_FALSE(findings[0].error);
  // One finding for the kind, every expert of every layer.
  EXPECT_NE(findings[0].message.find("model.layers.*.block_sparse_moe.experts.*.w2 (every layer)"), std::string::npos)
      << findings[0].message;
  EXPECT_NE(findings[0].message.find("352 inputs"), std::string::npos) << findings[0].message;
  const auto gptq = check_export_shapes("RTN", "gptq", {{"W_BIT", 4}, {"Q_GROUP_SIZE", 128}}, mixtral);
  ASSERT_FALSE(gptq.empty());
  EXPECT_TRUE(std::all_of(gptq.begin(), gptq.end(), [](const ExportFinding& f) { return f.error; }));
  // The same Linear at a group size that divides it: nothing to say.
  EXPECT_TRUE(check_export_shapes("RTN", "compressed-tensors", {{"W_BIT", 4}, {"Q_GROUP_SIZE", 32}}, mixtral).empty());
}

TEST(ExportFormats, EveryFormatHasARowAndTheRowsNameTheirRuntime) {
  const std::vector<std::string> want = {"fake_quant", "awq", "gptq", "compressed-tensors", "gguf", "onnx", "mlx"};
  EXPECT_EQ(export_format_names(), want);
  for (const auto& r : export_formats()) {
    EXPECT_FALSE(r.description.empty()) << r.name;
    EXPECT_TRUE(static_cast<bool>(r.check)) << r.name;
    EXPECT_TRUE(static_cast<bool>(r.linear)) << r.name;
  }
  EXPECT_EQ(find_export_format("ggml"), nullptr);
}

}  // namespace
}  // namespace qjobs
