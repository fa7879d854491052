// The estimate before a job starts (spec/estimate.hpp). Every figure below
// is worked out by hand in the comments from the model's widths and the
// algorithm's count of its work, not taken from the code's output.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include <nlohmann/json.hpp>

#include "spec/estimate.hpp"
#include "spec/job_spec.hpp"

namespace qjobs {
namespace {

using nlohmann::json;

// hidden h 64, 4 heads of 16 (q 64), 2 KV heads (kv 32), MLP m 128, 2 layers,
// vocab 256, float32, untied.
json tiny_config() {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"model_type", "llama"},
          {"hidden_size", 64},
          {"intermediate_size", 128},
          {"num_attention_heads", 4},
          {"num_key_value_heads", 2},
          {"num_hidden_layers", 2},
          {"vocab_size", 256},
          {"max_position_embeddings", 128},
          {"torch_dtype", "float32"},
          {"tie_word_embeddings", false}};
}

JobSpec parse(const std::string& yaml) {
  const auto r = parse_job_spec(yaml);
  EXPECT_TRUE(r.spec) << (r.issues.empty() ? "" : r.issues.front().message);
  return *r.spec;
}

const EstimateStage* stage(const JobEstimate& e, const std::string& name) {
  for (const auto& s : e.stages)
    if (s.name == name) return &s;
  return nullptr;
}

TEST(Estimate, GptqWorkOutputAndDiskAreCountedFromTheShapes) {
  const JobSpec spec = parse(R"(MODEL: org/tiny
ALGORITHM: GPTQ
DATA_PATH: calib.jsonl
EXPORT_FORMAT: compressed-tensors
VERIFY: false
llm:
  GPTQ:
    W_BIT: 4
    Q_GROUP_SIZE: 32
    ZERO_POINT: true
calibration:
  n_samples: 2
  seqlen: 8
)");
  const DeviceRates rates{"cpu", 1e9, 5e8, 1e8, "2026-12-07T00:00:00Z"};
  const auto e = estimate_job(spec, tiny_config(), &rates, false);
  ASSERT_TRUE(e);
  const auto* calib = stage(*e, "calibrate");
  ASSERT_NE(calib, nullptr);
  // Per block, T = 16 tokens in 2 windows of 8:
  //   Linear weights per token: 64*64 + 2*64*32 + 64*64 + 3*64*128 = 36864
  //   forward F = 2*16*36864 + attention 4*2*8*8*4*16 = 1179648 + 32768 = 1212416
  //   inputs captured 4 times and the output once: 5F = 6062080
  //   Hessians 2*16*(64^2 [q,k,v] + 64^2 [o] + 64^2 [gate,up] + 128^2 [down]) = 917504
  //   column loop, out*in^2: 64*4096 + 2*32*4096 + 64*4096 + 2*128*4096 + 64*16384 = 2883584
  //   output errors 2*1179648 = 2359296
  // Two blocks: 2 * 12222464 = 24444928 FLOPs in products, and in the
  // factors, 4/3 in^3 per Linear: 2 * 4/3 * (6*64^3 + 128^3) = 9786709.33.
  EXPECT_NEAR(calib->gemm_flops, 24444928.0, 1e-3);
  EXPECT_NEAR(calib->factor_flops, 9786709.33, 0.01);
  // 10 passes per weight: 2 * 10 * (64*64 + 2*64*32 + 64*64 + 3*64*128) = 737280.
  EXPECT_DOUBLE_EQ(calib->elementwise, 737280.0);
  // At 1 GFLOP/s in products, 0.5 in factors, and 1e8 passes/s.
  EXPECT_NEAR(calib->seconds, 0.024444928 + 0.01957341867 + 0.0073728, 1e-9);
  EXPECT_NEAR(e->seconds, calib->seconds, 1e-12);
  // Output: 4-bit codes, per group of 32 a 2-byte scale and a 4-bit zero:
  //   q, o: 64*64/2 + 64*2*2.5 = 2368; k, v: 64*32/2 + 32*2*2.5 = 1184;
  //   gate, up: 64*128/2 + 128*2*2.5 = 4736; down: 128*64/2 + 64*4*2.5 = 4736
  //   per layer 21312, two: 42624; embeddings and head 2*256*64*4 = 131072.
  EXPECT_EQ(e->output_bytes, 173696);
  EXPECT_EQ(e->original_bytes, 131072 + 2 * 36864 * 4);
  // Disk: while calibrating, the windows' hidden states (16*64 float32)
  // beside the finished blocks' packed Linears; then the output.
  EXPECT_EQ(e->disk_bytes, std::max<int64_t>(173696, 16 * 64 * 4 + 42624));
  EXPECT_EQ(e->device_bytes, 0);
  // More calibration tokens hold more memory, and take longer.
  JobSpec more = spec;
  more.calibration["n_samples"] = 64;
  const auto e2 = estimate_job(more, tiny_config(), &rates, false);
  ASSERT_TRUE(e2);
  EXPECT_GT(e2->host_bytes, e->host_bytes);
  EXPECT_GT(e2->seconds, e->seconds);
  // At 128 windows the hidden states (1024*64 float32) and the blocks' packed
  // Linears outweigh the output.
  more.calibration["n_samples"] = 128;
  EXPECT_EQ(estimate_job(more, tiny_config(), &rates, false)->disk_bytes, 1024 * 64 * 4 + 42624);
  // Verifying a compressed-tensors output runs the reference loader in its
  // own Python (600 MiB before it reads), with the checkpoint mapped and the
  // model in float32 (425984 bytes here too: it was float32 already).
  JobSpec verified = spec;
  verified.verify = true;
  EXPECT_EQ(estimate_job(verified, tiny_config(), &rates, false)->host_bytes, 600 * 1048576 + 425984 + 425984);
  // On a GPU the working set is device memory.
  const auto g = estimate_job(spec, tiny_config(), &rates, true);
  ASSERT_TRUE(g);
  EXPECT_GT(g->device_bytes, 0);
  EXPECT_LT(g->host_bytes, e->host_bytes);
}

// The cost count reads the block's own Linears (review of issue 31): a
// fused block (Phi-3: qkv_proj, gate_up_proj) and a mixture of experts are
// not counted as the dense Llama of the same widths.
TEST(Estimate, GptqCountsFusedAndExpertLinearsAsTheBlockHasThem) {
  const JobSpec spec = parse(R"(MODEL: org/tiny
ALGORITHM: GPTQ
DATA_PATH: calib.jsonl
EXPORT_FORMAT: compressed-tensors
VERIFY: false
llm:
  GPTQ:
    W_BIT: 4
    Q_GROUP_SIZE: 32
calibration:
  n_samples: 2
  seqlen: 8
)");
  const DeviceRates rates{"cpu", 1e9, 5e8, 1e8, "2026-12-07T00:00:00Z"};
  // Phi-3, one layer, the tiny widths: qkv 64 -> 128, o 64 -> 64, gate_up
  // 64 -> 256, down 128 -> 64. Products as the Llama above (the same weights
  // per token, inputs and columns): 12222464 per block. Factors, 4/3 in^3 per
  // Linear, four Linears not seven: 4/3 * (3*64^3 + 128^3) = 3844778.67.
  json phi3 = tiny_config();
  phi3["architectures"] = {"Phi3ForCausalLM"};
  phi3["model_type"] = "phi3";
  phi3["num_hidden_layers"] = 1;
  const auto fused = estimate_job(spec, phi3, &rates, false);
  ASSERT_TRUE(fused);
  EXPECT_NEAR(stage(*fused, "calibrate")->gemm_flops, 12222464.0, 1e-3);
  EXPECT_NEAR(stage(*fused, "calibrate")->factor_flops, 3844778.67, 0.01);

  // Mixtral, one layer, 4 experts of width 32, 2 per token. T = 16.
  //   weights per token: attention 64*64 + 2*64*32 + 64*64 = 12288, experts
  //     4 * 3 * 64*32 * (2/4) = 12288: 24576
  //   forward F = 2*16*24576 + attention 32768 = 819200; 4 groups + output: 5F = 4096000
  //   Hessians, one per input: q and o 2 * 2*16*64^2 = 262144; per expert its
  //     gate input 2*16*0.5*64^2 = 65536 and down input 2*16*0.5*32^2 = 16384:
  //     4 * 81920 = 327680; in all 589824
  //   column loop: q 64*4096, k and v 32*4096, o 64*4096 = 786432; per
  //     expert w1, w3 32*4096 and w2 64*32^2: 4 * 327680 = 1310720; 2097152
  //   output errors 2 * 786432 = 1572864
  // Products 4096000 + 589824 + 2097152 + 1572864 = 8355840. Factors 4/3 *
  // (4*64^3 + 4*(2*64^3 + 32^3)) = 4/3 * 3276800 = 4369066.67. (Counted as
  // a dense block of MLP width 64, the products were 7766016.)
  json mixtral = tiny_config();
  mixtral["architectures"] = {"MixtralForCausalLM"};
  mixtral["model_type"] = "mixtral";
  mixtral["num_hidden_layers"] = 1;
  mixtral["intermediate_size"] = 32;
  mixtral["num_local_experts"] = 4;
  mixtral["num_experts_per_tok"] = 2;
  const auto moe = estimate_job(spec, mixtral, &rates, false);
  ASSERT_TRUE(moe);
  EXPECT_NEAR(stage(*moe, "calibrate")->gemm_flops, 8355840.0, 1e-3);
  EXPECT_NEAR(stage(*moe, "calibrate")->factor_flops, 4369066.67, 0.01);
  // Every expert's weights are in the original: 12288 + 4 * 3 * 2048 = 36864
  // per layer in float32, beside the embeddings and head 2*256*64*4.
  EXPECT_EQ(moe->original_bytes, 131072 + 36864 * 4);
}

// Sequential MSE's own count (it had the generic three forwards). The mse
// loss (the default) scores each candidate through the group's Gram matrix;
// l1 through one more product of the group's columns per candidate.
TEST(Estimate, SequentialMseCountsItsCandidatesByLoss) {
  const std::string yaml = R"(MODEL: org/tiny
ALGORITHM: SequentialMSE
DATA_PATH: calib.jsonl
EXPORT_FORMAT: compressed-tensors
VERIFY: false
llm:
  SequentialMSE:
    W_BIT: 4
    Q_GROUP_SIZE: 32
    ZERO_POINT: false
    NUM_CANDIDATES: 4
calibration:
  n_samples: 2
  seqlen: 8
)";
  const DeviceRates rates{"cpu", 1e9, 5e8, 1e8, "2026-12-07T00:00:00Z"};
  const auto e = estimate_job(parse(yaml), tiny_config(), &rates, false);
  ASSERT_TRUE(e);
  const auto* calib = stage(*e, "calibrate");
  ASSERT_NE(calib, nullptr);
  // Per block, T = 16, g = 32; the seven Linears hold 36864 weights and
  // have 6 * 64 + 128 = 512 inputs in all.
  //   captures per sequential group (4) and the output: 5F = 5 * 1212416 = 6062080
  //   Gram matrices 2 * 16 * 32 * 512 = 524288; candidates 4 * 2 * 32 * 36864 = 9437184
  //   output errors 2 * 2 * 16 * 36864 = 2359296; per block 18382848, two: 36765696
  // Elementwise: 4 candidates * 17 passes * 36864 weights = 2506752 a block.
  EXPECT_NEAR(calib->gemm_flops, 36765696.0, 1e-3);
  EXPECT_DOUBLE_EQ(calib->elementwise, 5013504.0);
  EXPECT_EQ(calib->factor_flops, 0.0);
  for (const auto& n : e->notes) EXPECT_EQ(n.find("no cost count"), std::string::npos) << n;

  // l1: (4 + 1) * 2 * 16 * 36864 = 5898240 for the search; 6062080 + 5898240
  // + 2359296 = 14319616 a block. Elementwise, per candidate 14 * 36864 =
  // 516096 for the rounding and 3 * 16 * (2*64 + 2*32 + 2*32 + 2*64 + 2*128 +
  // 2*128 + 4*64) = 55296 for the loss: 4 * 571392 = 2285568 a block.
  std::string l1 = yaml;
  l1.insert(l1.find("calibration:"), "    LOSS_FN: l1\n");
  const auto e1 = estimate_job(parse(l1), tiny_config(), &rates, false);
  ASSERT_TRUE(e1);
  EXPECT_NEAR(stage(*e1, "calibrate")->gemm_flops, 2 * 14319616.0, 1e-3);
  EXPECT_DOUBLE_EQ(stage(*e1, "calibrate")->elementwise, 2 * 2285568.0);
}

// HQQ's own count: no calibration, 20 solver iterations of about 30 passes
// a weight and 14 more: 614 * 36864 weights * 2 blocks = 45268992 passes.
TEST(Estimate, HqqCountsItsSolverIterations) {
  const JobSpec spec = parse("MODEL: org/tiny\nALGORITHM: HQQ\nllm:\n  HQQ:\n    W_BIT: 4\n    Q_GROUP_SIZE: 32\n");
  const DeviceRates rates{"cpu", 1e9, 5e8, 1e8, "2026-12-07T00:00:00Z"};
  const auto e = estimate_job(spec, tiny_config(), &rates, false);
  ASSERT_TRUE(e);
  const auto* calib = stage(*e, "calibrate");
  ASSERT_NE(calib, nullptr);
  EXPECT_EQ(calib->gemm_flops, 0.0);
  EXPECT_DOUBLE_EQ(calib->elementwise, 45268992.0);
  EXPECT_NEAR(calib->seconds, 0.45268992, 1e-12);
}

// ONNX (issue 31: the estimate sized it as packed weights, 318 MiB against
// the 611 MiB the AI Hub recipe wrote at hidden 2048): the QDQ graph holds
// a byte a code and float32 for the rest; the float graph and the staged
// safetensors sit beside it while it is written.
TEST(Estimate, OnnxIsSizedAsItsQdqGraphWithTheFloatGraphBeside) {
  const JobSpec spec = parse(R"(MODEL: org/tiny
ALGORITHM: RTN
EXPORT_FORMAT: onnx
llm:
  RTN:
    W_BIT: 4
    Q_GROUP_SIZE: 32
    ZERO_POINT: true
)");
  const auto e = estimate_job(spec, tiny_config(), nullptr, false);
  ASSERT_TRUE(e);
  // Per layer, a byte a code, per group of 32 a float32 scale and a byte of zero point:
  //   q, o: 4096 + 64*2*5 = 4736; k, v: 2048 + 32*2*5 = 2368;
  //   gate, up: 8192 + 128*2*5 = 9472; down: 8192 + 64*4*5 = 9472: 42624; two layers 85248.
  // Embeddings and head in float32 (already float32 here): 131072.
  EXPECT_EQ(e->output_bytes, 131072 + 85248);
  // Beside it: the float graph, (32768 + 73728) * 4 = 425984, and the
  // staged safetensors, the original's 425984.
  EXPECT_EQ(e->disk_bytes, 216320 + 425984 + 425984);
}

TEST(Estimate, EvaluationCountsItsWindowsAndTheBaselineWithoutRatesThereIsNoTime) {
  const JobSpec spec = parse(R"(MODEL: org/tiny
ALGORITHM: Evaluate
eval:
  tasks:
    - type: ppl
      name: held
      data_path: held.jsonl
      seqlen: 8
      num_samples: 2
    - type: mc
      name: quiz
      data_path: quiz.jsonl
)");
  const DeviceRates rates{"cpu", 1e9, 5e8, 1e8, ""};
  const auto e = estimate_job(spec, tiny_config(), &rates, false);
  ASSERT_TRUE(e);
  EXPECT_EQ(stage(*e, "calibrate"), nullptr);
  const auto* ev = stage(*e, "evaluate");
  ASSERT_NE(ev, nullptr);
  // 16 tokens through the head (2*16*64*256 = 524288) and two blocks (2 * 1212416).
  EXPECT_DOUBLE_EQ(ev->gemm_flops, 524288.0 + 2 * 1212416.0);
  // The multiple-choice task is named as not counted.
  bool named = false;
  for (const auto& n : e->notes) named = named || n.find("quiz") != std::string::npos;
  EXPECT_TRUE(named);
  // Nothing quantized: the output is the model as it is.
  EXPECT_EQ(e->output_bytes, e->original_bytes);

  // Without rates: memory and disk, no time.
  const auto none = estimate_job(spec, tiny_config(), nullptr, false);
  ASSERT_TRUE(none);
  EXPECT_LT(none->seconds, 0);
  EXPECT_EQ(none->host_bytes, e->host_bytes);
  EXPECT_TRUE(to_json(*none)["seconds"].is_null());
}

TEST(Estimate, AConfigTheModelReaderRefusesGivesNoEstimateAndSaysWhy) {
  const JobSpec spec = parse("MODEL: org/tiny\nALGORITHM: RTN\n");
  json bad = tiny_config();
  bad["architectures"] = {"NoSuchForCausalLM"};
  bad.erase("model_type");
  std::string why;
  EXPECT_FALSE(estimate_job(spec, bad, nullptr, false, &why));
  EXPECT_NE(why.find("NoSuchForCausalLM"), std::string::npos) << why;
}

TEST(Estimate, RatesRoundTripAndRefuseNonsense) {
  const DeviceRates r{"cuda:0", 4.5e14, 3e13, 2e11, "2026-12-07T00:00:00Z"};
  const auto back = device_rates_from_json(to_json(r));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->device, "cuda:0");
  EXPECT_DOUBLE_EQ(back->gemm_flops, 4.5e14);
  EXPECT_DOUBLE_EQ(back->factor_flops, 3e13);
  EXPECT_DOUBLE_EQ(back->elementwise, 2e11);
  EXPECT_FALSE(device_rates_from_json(json{{"gemm_gflops", -1}}));
  EXPECT_FALSE(device_rates_from_json(json{{"gemm_gflops", "fast"}}));
  EXPECT_FALSE(device_rates_from_json(json::array()));
}

}  // namespace
}  // namespace qjobs
