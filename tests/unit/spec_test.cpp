// Job spec parsing and validation (spec/job_spec).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include <unistd.h>

#include "spec/algorithm_catalog.hpp"
#include "spec/eval_task.hpp"
#include "spec/job_spec.hpp"
#include "spec/nyuntam_eval.hpp"
#include "common/strings.hpp"

namespace qjobs {
namespace {

// The two Nyuntam configs quoted in the spine issue, byte for byte.
const char* kNyuntamAwq = R"(MODEL: "meta-llama/Meta-Llama-3.1-8B-Instruct"
DATASET_NAME: "wikitext"
DATASET_SUBNAME: "wikitext-2-raw-v1"
TEXT_COLUMN: "text"
SPLIT: "train"
DATA_PATH:
FORMAT_STRING:
llm:
  AutoAWQ:
    ZERO_POINT: True
    W_BIT: 4
    Q_GROUP_SIZE: 128
    VERSION: "GEMV"
CUDA_ID: "0"
ALGORITHM: "AutoAWQ"
JOB_SERVICE: "Kompress"
USER_FOLDER: "user_data"
JOB_ID: "awq_quantization"
CACHE_PATH: "user_data/.cache"
JOB_PATH: "user_data/jobs/awq_quantization"
LOGGING_PATH: "user_data/logs/awq_quantization"
ALGO_TYPE: "llm"
TASK: "llm"
)";

const char* kNyuntamLmquant = R"(MODEL: "meta-llama/Meta-Llama-3.1-8B-Instruct"
DATASET_NAME: "mit-han-lab/pile-val-backup"
DATASET_SUBNAME: ""
TEXT_COLUMN: "text"
SPLIT: "validation"
DATA_PATH:
FORMAT_STRING:
llm:
  LMQuant:
    save_model: True
    keep_scales: True
    loads_with_qserve: False
    dtype: float32
    quant_type: "gchn"
    quant.develop_dtype: torch.float32
    quant.smooth.xw.alpha: 0.05
    quant.smooth.xw.beta: 0.95
    quant.smooth.yx.strategy: GridSearch
    quant.smooth.yx.beta: " -2"
    quant.wgts.calib_range.outputs_device: cpu
    quant.reorder.outputs_device: cpu
    quant.smooth.xw.outputs_device: cpu
    quant.smooth.yx.outputs_device: cpu
    eval.tasks:
      - arc_challenge:25
    eval.max_seq_length: 4096
    eval.evaluator: "lm_eval"
CUDA_ID: "0,1,2,3"
ALGORITHM: "LMQuant"
JOB_SERVICE: "Kompress"
USER_FOLDER: "user_data"
JOB_ID: "lmquant_quantization"
CACHE_PATH: "user_data/.cache"
JOB_PATH: "user_data/jobs/lmquant_quantization"
LOGGING_PATH: "user_data/logs/lmquant_quantization"
ALGO_TYPE: "llm"
TASK: "llm"
)";

// Every key of a Nyuntam config is accepted; the only complaint allowed is
// that the algorithm is not built yet (or none, once it is).
void expect_only_not_available(const SpecParseResult& r, const std::string& algo) {
  const AlgorithmInfo* info = find_algorithm(algo);
  ASSERT_NE(info, nullptr);
  if (info->available) {
    ASSERT_TRUE(r.spec.has_value());
    return;
  }
  ASSERT_EQ(r.issues.size(), 1u) << r.issues[0].path << ": " << r.issues[0].message;
  EXPECT_EQ(r.issues[0].path, "ALGORITHM");
  EXPECT_NE(r.issues[0].message.find("not available yet"), std::string::npos) << r.issues[0].message;
  EXPECT_GT(r.issues[0].line, 0);
}

// Issue 14: VERSION GEMV used to pack GEMM silently. An AWQ export refuses
// it at submission, naming the key, line and column; with another export
// it is a warning that it does nothing; GEMM is fine.
// Issue 29: a name of an id's shape would let DELETE /jobs/<A's id>, retried
// after A is gone, remove B; it is refused at the key.
TEST(JobSpec, JobNamesThatLookLikeIdsAreRefused) {
  const auto r = parse_job_spec("MODEL: m\nALGORITHM: RTN\nJOB_ID: 20261201-203000-9f3c2a71d04be815\n");
  ASSERT_EQ(r.issues.size(), 1u);
  EXPECT_EQ(r.issues[0].path, "JOB_ID");
  EXPECT_EQ(r.issues[0].line, 3);
  EXPECT_NE(r.issues[0].message.find("shape of a job id"), std::string::npos) << r.issues[0].message;
  for (const char* fine : {"20261201-203000-9f3c2a71d04be81", "20261201-203000-9F3C2A71D04BE815", "awq_quantization",
                           "20261201-203000-9f3c2a71d04be815x"})
    EXPECT_TRUE(parse_job_spec(std::string("MODEL: m\nALGORITHM: RTN\nJOB_ID: \"") + fine + "\"\n").spec) << fine;
}

TEST(JobSpec, AwqVersionOtherThanGemmIsRefusedOrSaidToDoNothing) {
  const std::string base = "MODEL: m\nALGORITHM: AutoAWQ\nDATA_PATH: d.jsonl\n";
  const auto refused = parse_job_spec(base + "EXPORT_FORMAT: awq\nllm:\n  AutoAWQ:\n    VERSION: GEMV\n");
  ASSERT_FALSE(refused.spec);
  ASSERT_EQ(refused.issues.size(), 1u) << refused.issues[0].message;
  EXPECT_EQ(refused.issues[0].path, "llm.AutoAWQ.VERSION");
  EXPECT_EQ(refused.issues[0].line, 7);
  EXPECT_EQ(refused.issues[0].column, 14);
  EXPECT_NE(refused.issues[0].message.find("GEMM layout only"), std::string::npos) << refused.issues[0].message;
  const auto warned = parse_job_spec(base + "llm:\n  AutoAWQ:\n    VERSION: GEMV_FAST\n");
  ASSERT_TRUE(warned.spec);
  bool said = false;
  for (const auto& w : warned.spec->warnings) said |= w.find("llm.AutoAWQ.VERSION GEMV_FAST has no effect") == 0;
  EXPECT_TRUE(said);
  const auto gemm = parse_job_spec(base + "EXPORT_FORMAT: awq\nllm:\n  AutoAWQ:\n    VERSION: GEMM\n");
  ASSERT_TRUE(gemm.spec);
  for (const auto& w : gemm.spec->warnings) EXPECT_EQ(w.find("VERSION"), std::string::npos) << w;
}

// EXPORT_FORMAT onnx: integer-weight algorithms with static inputs; its
// graph shape is checked before the work starts, naming the key.
TEST(JobSpec, OnnxExportTakesIntegerWeightsAndAValidGraphShape) {
  const std::string base = "MODEL: m\nDATA_PATH: d.jsonl\nEXPORT_FORMAT: onnx\n";
  const auto ok = parse_job_spec(base +
                                 "ALGORITHM: SequentialMSE\nONNX_SEQ_LEN: 64\nONNX_CONTEXT_LEN: 512\n"
                                 "llm:\n  SequentialMSE:\n    A_BIT: 16\n");
  ASSERT_TRUE(ok.spec) << ok.issues[0].message;
  EXPECT_EQ(ok.spec->onnx_seq_len, 64);
  EXPECT_EQ(ok.spec->onnx_context_len, 512);
  const auto round = job_spec_from_json(to_json(*ok.spec));
  EXPECT_EQ(round.onnx_context_len, 512);
  const auto fp8 = parse_job_spec(base + "ALGORITHM: FP8\n");
  ASSERT_FALSE(fp8.spec);
  EXPECT_EQ(fp8.issues[0].path, "EXPORT_FORMAT");
  EXPECT_EQ(fp8.issues[0].line, 3);
  EXPECT_NE(fp8.issues[0].message.find("integer-weight models"), std::string::npos) << fp8.issues[0].message;
  const auto shape = parse_job_spec(base + "ALGORITHM: RTN\nONNX_SEQ_LEN: 128\nONNX_CONTEXT_LEN: 128\n");
  ASSERT_FALSE(shape.spec);
  EXPECT_EQ(shape.issues[0].path, "ONNX_CONTEXT_LEN");
  EXPECT_EQ(shape.issues[0].line, 6);
  const auto act_order = parse_job_spec(base + "ALGORITHM: GPTQ\nllm:\n  GPTQ:\n    DESC_ACT: true\n");
  ASSERT_FALSE(act_order.spec);
  EXPECT_EQ(act_order.issues[0].path, "llm.GPTQ.DESC_ACT");
  // Elsewhere the keys change nothing, and the job says so.
  const auto elsewhere = parse_job_spec("MODEL: m\nALGORITHM: RTN\nONNX_SEQ_LEN: 64\n");
  ASSERT_TRUE(elsewhere.spec);
  bool said = false;
  for (const auto& w : elsewhere.spec->warnings)
    said |= w.find("ONNX_SEQ_LEN / ONNX_CONTEXT_LEN shape the ONNX export only") == 0;
  EXPECT_TRUE(said);
}

TEST(JobSpec, NyuntamAwqConfigValidatesUnchanged) { expect_only_not_available(parse_job_spec(kNyuntamAwq), "AutoAWQ"); }

TEST(JobSpec, NyuntamLmquantConfigValidatesUnchanged) {
  expect_only_not_available(parse_job_spec(kNyuntamLmquant), "LMQuant");
}

TEST(JobSpec, NyuntamAwqAsRtnParsesEveryField) {
  std::string yaml = kNyuntamAwq;
  yaml.replace(yaml.find("ALGORITHM: \"AutoAWQ\""), 20, "ALGORITHM: \"RTN\"");
  yaml.replace(yaml.find("  AutoAWQ:"), 10, "  RTN:");
  const auto r = parse_job_spec(yaml);
  ASSERT_TRUE(r.spec) << r.issues[0].message;
  const JobSpec& s = *r.spec;
  EXPECT_EQ(s.model, "meta-llama/Meta-Llama-3.1-8B-Instruct");
  EXPECT_EQ(s.dataset_name, "wikitext");
  EXPECT_EQ(s.dataset_subname, "wikitext-2-raw-v1");
  EXPECT_EQ(s.text_columns, std::vector<std::string>{"text"});
  EXPECT_EQ(s.split, "train");
  EXPECT_EQ(s.data_path, "");
  EXPECT_EQ(s.cuda_ids, std::vector<int>{0});
  EXPECT_EQ(s.job_id, "awq_quantization");
  EXPECT_EQ(s.params["W_BIT"], 4);
  EXPECT_EQ(s.params["Q_GROUP_SIZE"], 128);
  EXPECT_EQ(s.params["ZERO_POINT"], true);
  EXPECT_EQ(s.params["VERSION"], "GEMV");
  // The five server-owned paths minus MODEL_PATH (absent) were warned
  // about, and VERSION GEMV, which a fake_quant export does not use.
  ASSERT_EQ(s.warnings.size(), 5u);
  for (std::size_t i = 0; i < 4; ++i) EXPECT_NE(s.warnings[i].find("decided by the server"), std::string::npos);
  EXPECT_NE(s.warnings[4].find("VERSION GEMV has no effect"), std::string::npos) << s.warnings[4];
}

TEST(JobSpec, DottedKeysExpandIntoSections) {
  std::string yaml = kNyuntamLmquant;
  auto r = parse_job_spec(yaml);
  ASSERT_TRUE(r.spec) << r.issues[0].message;
  const auto& q = r.spec->params["quant"];
  EXPECT_EQ(r.spec->params["quant_type"], "gchn");
  EXPECT_DOUBLE_EQ(q["smooth"]["xw"]["alpha"].get<double>(), 0.05);
  EXPECT_DOUBLE_EQ(q["smooth"]["xw"]["beta"].get<double>(), 0.95);
  EXPECT_EQ(q["smooth"]["yx"]["strategy"], "GridSearch");
  EXPECT_DOUBLE_EQ(q["smooth"]["yx"]["beta"].get<double>(), -2);  // the string " -2"
  EXPECT_EQ(q["reorder"]["outputs_device"], "cpu");
  // A near copy whose only defect is a bad dotted key.
  yaml.replace(yaml.find("quant.reorder.outputs_device"), 28, "quant.reorder.output_device");
  r = parse_job_spec(yaml);
  ASSERT_EQ(r.issues.size(), 1u);
  EXPECT_EQ(r.issues[0].path, "llm.LMQuant.quant.reorder.output_device");
  EXPECT_NE(r.issues[0].message.find("did you mean 'outputs_device'"), std::string::npos) << r.issues[0].message;
  EXPECT_EQ(r.issues[0].line, 21);
  EXPECT_EQ(r.issues[0].column, 5);
}

TEST(JobSpec, LmquantKeysThatMapToNothingAreRefusedWithTheKnownOnes) {
  std::string yaml = kNyuntamLmquant;
  yaml.replace(yaml.find("    quant.develop_dtype"), 4,
               "    quant.wgts.dtype: uint3\n    quant.opts.gamma: 2\n    quant.ipts.static: true\n    ");
  const auto r = parse_job_spec(yaml);
  ASSERT_EQ(r.issues.size(), 2u);
  EXPECT_EQ(r.issues[0].path, "llm.LMQuant.quant.wgts.dtype");
  EXPECT_NE(r.issues[0].message.find("uint4"), std::string::npos) << r.issues[0].message;
  EXPECT_EQ(r.issues[0].line, 15);
  EXPECT_EQ(r.issues[1].path, "llm.LMQuant.quant.opts.gamma");
  EXPECT_NE(r.issues[1].message.find("known: dtype, group_size"), std::string::npos) << r.issues[1].message;
  EXPECT_EQ(r.issues[1].line, 16);
  EXPECT_EQ(r.issues[1].column, 5);
}

TEST(JobSpec, CalibratingAlgorithmsNeedData) {
  const auto awq = parse_job_spec("MODEL: m\nALGORITHM: AutoAWQ\n");
  ASSERT_EQ(awq.issues.size(), 1u);
  EXPECT_EQ(awq.issues[0].path, "DATA_PATH");
  EXPECT_EQ(awq.issues[0].line, 2);
  EXPECT_TRUE(parse_job_spec("MODEL: m\nALGORITHM: AutoAWQ\ncalibration:\n  data_path: c.jsonl\n").spec);
  EXPECT_TRUE(parse_job_spec("MODEL: m\nALGORITHM: RTN\n").spec);  // calibration-free
  EXPECT_TRUE(parse_job_spec("MODEL: m\nALGORITHM: FP8\n").spec);  // dynamic, no KV: nothing to calibrate
  EXPECT_FALSE(parse_job_spec("MODEL: m\nALGORITHM: FP8\nllm:\n  FP8:\n    kv_cache: true\n").spec);
}

TEST(JobSpec, LmquantQservePackingIsRefusedAtItsKey) {
  std::string yaml = kNyuntamLmquant;
  yaml.replace(yaml.find("loads_with_qserve: False"), 24, "loads_with_qserve: True");
  const auto r = parse_job_spec(yaml);
  ASSERT_EQ(r.issues.size(), 1u);
  EXPECT_EQ(r.issues[0].path, "llm.LMQuant.loads_with_qserve");
  EXPECT_EQ(r.issues[0].line, 12);
  EXPECT_NE(r.issues[0].message.find("QServe"), std::string::npos);
}

TEST(JobSpec, ActivationAlgorithmsTakeABitOverridesAndFp8PacksAsCompressedTensors) {
  const auto sq = parse_job_spec(
      "MODEL: m\nALGORITHM: SmoothQuant\nDATA_PATH: d.jsonl\nllm:\n  SmoothQuant:\n    A_BIT: 16\n"
      "    LAYER_OVERRIDES:\n      - pattern: \"*.mlp.*\"\n        A_BIT: 8\n");
  ASSERT_TRUE(sq.spec) << sq.issues[0].message;
  EXPECT_EQ(sq.spec->params["LAYER_OVERRIDES"][0]["A_BIT"], 8);
  // Weight-only algorithms have no activations to set.
  const auto rtn = parse_job_spec(
      "MODEL: m\nALGORITHM: RTN\nllm:\n  RTN:\n    LAYER_OVERRIDES:\n      - pattern: x\n        A_BIT: 8\n");
  ASSERT_EQ(rtn.issues.size(), 1u);
  EXPECT_EQ(rtn.issues[0].path, "llm.RTN.LAYER_OVERRIDES[0].A_BIT");
  EXPECT_TRUE(parse_job_spec("MODEL: m\nALGORITHM: FP8\nEXPORT_FORMAT: compressed-tensors\n").spec);
  const auto lm = parse_job_spec("MODEL: m\nALGORITHM: LMQuant\nDATA_PATH: d.jsonl\nEXPORT_FORMAT: gptq\n");
  ASSERT_EQ(lm.issues.size(), 1u);
  EXPECT_EQ(lm.issues[0].path, "EXPORT_FORMAT");
}

// Issue 14: packed by default, and what an export cannot hold of the
// model's Linears (read from its config.json) refused at submission.
TEST(JobSpec, ExportIsPackedByDefaultAndCheckedAgainstTheModelShapes) {
  EXPECT_EQ(parse_job_spec("MODEL: m\nALGORITHM: RTN\n").spec->export_format, "compressed-tensors");
  EXPECT_EQ(parse_job_spec("MODEL: m\nALGORITHM: FP8\n").spec->export_format, "compressed-tensors");
  EXPECT_EQ(parse_job_spec("MODEL: m\nALGORITHM: RTN\nEXPORT_FORMAT: fake_quant\n").spec->export_format, "fake_quant");
  // 3 bits: compressed-tensors packs them densely (issue 31: HQQ at 3 and
  // 2 bits had only fake_quant, larger than the original). Accepted, with a
  // warning at the key that vLLM's kernels take 4 and 8 bits only.
  const auto w3 = parse_job_spec("MODEL: m\nALGORITHM: RTN\nllm:\n  RTN:\n    W_BIT: 3\n");
  ASSERT_TRUE(w3.spec) << (w3.issues.empty() ? "" : w3.issues[0].message);
  ASSERT_EQ(w3.spec->warnings.size(), 1u);
  EXPECT_NE(w3.spec->warnings[0].find("llm.RTN.W_BIT"), std::string::npos) << w3.spec->warnings[0];
  EXPECT_NE(w3.spec->warnings[0].find("vLLM and SGLang load 4 and 8 bits only"), std::string::npos);
  EXPECT_TRUE(parse_job_spec("MODEL: m\nALGORITHM: RTN\nEXPORT_FORMAT: fake_quant\nllm:\n  RTN:\n    W_BIT: 3\n").spec);
  const auto hqq = parse_job_spec("MODEL: m\nALGORITHM: HQQ\nllm:\n  HQQ:\n    ZERO_POINTS: real\n");
  ASSERT_EQ(hqq.issues.size(), 1u);
  EXPECT_EQ(hqq.issues[0].path, "llm.HQQ.ZERO_POINTS");
  EXPECT_TRUE(parse_job_spec("MODEL: m\nALGORITHM: HQQ\nEXPORT_FORMAT: awq\n").spec);
  const auto lm = parse_job_spec("MODEL: m\nALGORITHM: NVFP4\nEXPORT_FORMAT: gptq\n");
  ASSERT_EQ(lm.issues.size(), 1u);
  EXPECT_EQ(lm.issues[0].path, "EXPORT_FORMAT");

  // A model on this machine: hidden 128, intermediate 360 (not a multiple of
  // 64, nor of NVFP4's 16 or MXFP4's 32).
  const auto dir = std::filesystem::temp_directory_path() / ("qjobs_shapes_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "config.json")
      << R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 128, "intermediate_size": 360, "num_hidden_layers": 2,
      "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100})";
  const std::string m = "MODEL: \"" + dir.string() + "\"\n";
  const auto awq = parse_job_spec(m + "ALGORITHM: RTN\nEXPORT_FORMAT: awq\nllm:\n  RTN:\n    Q_GROUP_SIZE: 64\n");
  ASSERT_EQ(awq.issues.size(), 1u);
  EXPECT_EQ(awq.issues[0].path, "llm.RTN.Q_GROUP_SIZE");
  EXPECT_EQ(awq.issues[0].line, 6);
  EXPECT_NE(awq.issues[0].message.find("model.layers.*.mlp.down_proj (every layer)"), std::string::npos)
      << awq.issues[0].message;
  EXPECT_NE(awq.issues[0].message.find("360 inputs"), std::string::npos);
  // compressed-tensors packs it per channel, and says so.
  const auto ct = parse_job_spec(m + "ALGORITHM: RTN\nllm:\n  RTN:\n    Q_GROUP_SIZE: 64\n");
  ASSERT_TRUE(ct.spec);
  ASSERT_EQ(ct.spec->warnings.size(), 1u);
  EXPECT_NE(ct.spec->warnings[0].find("per output channel"), std::string::npos);
  // Issue 27: fake_quant follows the same rule (its twin is the same model),
  // and says so; it still holds FP4 Linears of any width.
  const auto fq = parse_job_spec(m + "ALGORITHM: RTN\nEXPORT_FORMAT: fake_quant\nllm:\n  RTN:\n    Q_GROUP_SIZE: 64\n");
  ASSERT_TRUE(fq.spec);
  ASSERT_EQ(fq.spec->warnings.size(), 1u);
  EXPECT_NE(fq.spec->warnings[0].find("per output channel in every export form"), std::string::npos)
      << fq.spec->warnings[0];
  EXPECT_TRUE(parse_job_spec(m + "ALGORITHM: NVFP4\nEXPORT_FORMAT: fake_quant\n").spec);
  // QoQ g128 is ragged there too (the worker packs it per channel), gchn is not.
  const auto qoq =
      parse_job_spec(m + "ALGORITHM: LMQuant\nDATA_PATH: d.jsonl\nllm:\n  LMQuant:\n    quant_type: g128\n");
  ASSERT_TRUE(qoq.spec);
  ASSERT_EQ(qoq.spec->warnings.size(), 1u);
  EXPECT_NE(qoq.spec->warnings[0].find("mlp.down_proj"), std::string::npos);
  EXPECT_TRUE(parse_job_spec(m + "ALGORITHM: LMQuant\nDATA_PATH: d.jsonl\n").spec->warnings.empty());
  // Skipped Linears are not checked; at a group size that divides, nothing is said.
  const auto g8 = parse_job_spec(m + "ALGORITHM: RTN\nEXPORT_FORMAT: gptq\nllm:\n  RTN:\n    Q_GROUP_SIZE: 8\n");
  EXPECT_TRUE(g8.spec) << (g8.issues.empty() ? "" : g8.issues[0].message);
  const auto nv = parse_job_spec(m + "ALGORITHM: MXFP4\n");
  ASSERT_EQ(nv.issues.size(), 1u);
  EXPECT_EQ(nv.issues[0].path, "ALGORITHM");
  EXPECT_NE(nv.issues[0].message.find("SKIP"), std::string::npos);
  EXPECT_TRUE(
      parse_job_spec(m + "ALGORITHM: MXFP4\nllm:\n  MXFP4:\n    LAYER_OVERRIDES:\n      - pattern: \"*.down_proj\"\n"
                         "        SKIP: true\n")
          .spec);
  EXPECT_FALSE(parse_job_spec(m + "ALGORITHM: NVFP4\n").spec) << "360 is no multiple of 16";
  EXPECT_TRUE(
      parse_job_spec(m + "ALGORITHM: NVFP4\nllm:\n  NVFP4:\n    LAYER_OVERRIDES:\n      - pattern: \"*.down_proj\"\n"
                         "        SKIP: true\n")
          .spec);
  std::filesystem::remove_all(dir);
}

TEST(JobSpec, UnknownTopLevelKeySuggestsTheNearName) {
  const auto r = parse_job_spec("MODEL: m\nALGORITM: RTN\n");
  ASSERT_EQ(r.issues.size(), 2u);  // the typo, and ALGORITHM missing
  EXPECT_EQ(r.issues[0].path, "ALGORITM");
  EXPECT_EQ(r.issues[0].line, 2);
  EXPECT_EQ(r.issues[0].column, 1);
  EXPECT_NE(r.issues[0].message.find("did you mean 'ALGORITHM'"), std::string::npos);
  EXPECT_EQ(r.issues[1].path, "ALGORITHM");
}

TEST(JobSpec, WrongTypeNamesKeyLineAndColumn) {
  const auto r = parse_job_spec("MODEL: m\nALGORITHM: RTN\nllm:\n  RTN:\n    W_BIT: four\n");
  ASSERT_EQ(r.issues.size(), 1u);
  EXPECT_EQ(r.issues[0].path, "llm.RTN.W_BIT");
  EXPECT_EQ(r.issues[0].line, 5);
  EXPECT_EQ(r.issues[0].column, 12);
  EXPECT_NE(r.issues[0].message.find("expected an integer"), std::string::npos);
}

TEST(JobSpec, OutOfRangeAndRules) {
  auto r = parse_job_spec("MODEL: m\nALGORITHM: RTN\nllm:\n  RTN:\n    W_BIT: 9\n");
  ASSERT_EQ(r.issues.size(), 1u);
  EXPECT_NE(r.issues[0].message.find("out of range [2, 8]"), std::string::npos) << r.issues[0].message;
  r = parse_job_spec("MODEL: m\nALGORITHM: RTN\nllm:\n  RTN:\n    Q_GROUP_SIZE: 0\n");
  ASSERT_EQ(r.issues.size(), 1u);
  EXPECT_EQ(r.issues[0].path, "llm.RTN.Q_GROUP_SIZE");
  r = parse_job_spec("MODEL: m\nALGORITHM: RTN\nllm:\n  RTN:\n    VERSION: GEM\n");
  ASSERT_EQ(r.issues.size(), 1u);
  EXPECT_NE(r.issues[0].message.find("did you mean 'GEMM'"), std::string::npos);
  r = parse_job_spec("MODEL: m\nALGORITHM: RTN\nCUDA_ID: \"0,x\"\n");
  ASSERT_EQ(r.issues.size(), 1u);
  EXPECT_EQ(r.issues[0].path, "CUDA_ID");
}

TEST(JobSpec, MalformedYamlGivesLineAndColumn) {
  const auto r = parse_job_spec("MODEL: m\nALGORITHM: RTN\nllm: [unclosed\n");
  ASSERT_EQ(r.issues.size(), 1u);
  EXPECT_NE(r.issues[0].message.find("malformed YAML"), std::string::npos);
  EXPECT_GT(r.issues[0].line, 0);
  EXPECT_GT(r.issues[0].column, 0);
}

TEST(JobSpec, UnknownAlgorithmSuggests) {
  const auto r = parse_job_spec("MODEL: m\nALGORITHM: AutoAW\n");
  ASSERT_EQ(r.issues.size(), 1u);
  EXPECT_NE(r.issues[0].message.find("did you mean 'AutoAWQ'"), std::string::npos);
  const auto awq = parse_job_spec("MODEL: m\nALGORITHM: AWQ\n");
  ASSERT_EQ(awq.issues.size(), 1u);
  EXPECT_NE(awq.issues[0].message.find("did you mean 'AutoAWQ'"), std::string::npos) << awq.issues[0].message;
  EXPECT_EQ(r.issues[0].line, 2);
  EXPECT_EQ(r.issues[0].column, 12);
}

TEST(JobSpec, EmptyAndNonMappingSpecs) {
  EXPECT_EQ(parse_job_spec("").issues.size(), 1u);
  EXPECT_EQ(parse_job_spec("- a\n- b\n").issues.size(), 1u);
  EXPECT_FALSE(parse_job_spec("just text").spec);
}

TEST(JobSpec, DefaultsAndJsonRoundTrip) {
  const auto r = parse_job_spec("MODEL: m\nALGORITHM: RTN\nCUDA_ID: \"1,3\"\nPRIORITY: 5\nTIMEOUT_S: 60\n");
  ASSERT_TRUE(r.spec);
  EXPECT_EQ(r.spec->params["W_BIT"], 4);
  EXPECT_EQ(r.spec->params["Q_GROUP_SIZE"], 128);
  EXPECT_EQ(r.spec->devices_requested(), 2);
  const JobSpec back = job_spec_from_json(to_json(*r.spec));
  EXPECT_EQ(to_json(back), to_json(*r.spec));
  EXPECT_EQ(back.priority, 5);
  EXPECT_DOUBLE_EQ(back.timeout_s, 60);
}

TEST(AlgorithmCatalog, EveryRowIsComplete) {
  for (const auto& a : algorithm_catalog()) {
    EXPECT_FALSE(a.name.empty());
    EXPECT_FALSE(a.description.empty()) << a.name;
    std::vector<const ParamSpec*> stack;
    for (const auto& p : a.params) stack.push_back(&p);
    while (!stack.empty()) {
      const ParamSpec* p = stack.back();
      stack.pop_back();
      EXPECT_FALSE(p->name.empty()) << a.name;
      EXPECT_FALSE(p->description.empty()) << a.name << "." << p->name;
      EXPECT_EQ(p->name.find('.'), std::string::npos) << "dotted names are for specs, not schemas";
      for (const auto& c : p->children) stack.push_back(&c);
    }
  }
}

}  // namespace
}  // namespace qjobs

namespace qjobs {
namespace {

// Every ready spec in configs/ and examples/ is accepted, or refused only
// because its algorithm is not built yet.
TEST(JobSpec, ShippedConfigsValidate) {
  int seen = 0;
  for (const char* folder : {"configs", "examples"}) {
    for (const auto& e : std::filesystem::directory_iterator(std::filesystem::path(QJOBS_SOURCE_DIR) / folder)) {
      if (e.path().extension() != ".yaml") continue;
      std::ifstream in(e.path());
      const std::string text((std::istreambuf_iterator<char>(in)), {});
      const auto r = parse_job_spec(text);
      ++seen;
      if (r.spec) continue;
      ASSERT_EQ(r.issues.size(), 1u) << e.path() << ": " << r.issues[0].path << ": " << r.issues[0].message;
      EXPECT_NE(r.issues[0].message.find("not available yet"), std::string::npos) << e.path();
    }
  }
  EXPECT_GE(seen, 4);
}

}  // namespace
}  // namespace qjobs

namespace qjobs {
namespace {

// Each eval task type takes its row's keys and no other, gets its row's
// defaults (and only those), and a foreign key is named at its line.
TEST(EvalTasks, EachTypeTakesItsRowsKeysWithItsDefaults) {
  const auto r = parse_job_spec(
      "MODEL: m\nALGORITHM: RTN\neval:\n  tasks:\n    - type: ppl\n      data_path: t.jsonl\n"
      "    - type: demo\n      prompts: [hi]\n");
  ASSERT_TRUE(r.spec) << r.issues[0].path << ": " << r.issues[0].message;
  const auto& ppl = r.spec->eval["tasks"][0];
  EXPECT_EQ(ppl["seqlen"], 2048);
  EXPECT_EQ(ppl["num_samples"], -1);
  EXPECT_EQ(ppl["batch_size"], 1);
  EXPECT_FALSE(ppl.contains("max_new_tokens")) << "a demo key is not written into a ppl task";
  const auto& demo = r.spec->eval["tasks"][1];
  EXPECT_EQ(demo["max_new_tokens"], 64);
  EXPECT_EQ(demo["raw"], false);
  EXPECT_FALSE(demo.contains("seqlen"));

  const auto bad = parse_job_spec(
      "MODEL: m\nALGORITHM: RTN\neval:\n  tasks:\n    - type: ppl\n      data_path: t.jsonl\n"
      "      max_new_tokens: 8\n");
  ASSERT_EQ(bad.issues.size(), 1u);
  EXPECT_EQ(bad.issues[0].path, "eval.tasks[0].max_new_tokens");
  EXPECT_EQ(bad.issues[0].line, 7);
  EXPECT_EQ(bad.issues[0].column, 7);
  EXPECT_NE(bad.issues[0].message.find("a ppl task has no key 'max_new_tokens'"), std::string::npos)
      << bad.issues[0].message;
  EXPECT_NE(bad.issues[0].message.find("seqlen"), std::string::npos) << "names the keys it does take";
  // A key no task takes is still the schema's unknown key, with its near name.
  const auto typo = parse_job_spec(
      "MODEL: m\nALGORITHM: RTN\neval:\n  tasks:\n    - type: ppl\n      data_path: t.jsonl\n      seqln: 8\n");
  ASSERT_EQ(typo.issues.size(), 1u);
  EXPECT_NE(typo.issues[0].message.find("seqlen"), std::string::npos) << typo.issues[0].message;
}

// The registry: every type once, the schema's type choices are the rows',
// each row complete and its keys named once.
TEST(EvalTasks, EveryRowIsCompleteAndTheSchemaIsBuiltFromThem) {
  std::vector<std::string> types;
  for (const auto& t : eval_task_catalog()) {
    EXPECT_EQ(std::count(types.begin(), types.end(), t.type), 0) << t.type;
    types.push_back(t.type);
    EXPECT_FALSE(t.description.empty()) << t.type;
    EXPECT_FALSE(t.data.empty()) << t.type;
    EXPECT_FALSE(t.metrics.empty()) << t.type;
    EXPECT_FALSE(t.protocol.empty()) << t.type;
    ASSERT_TRUE(t.datasets) << t.type;
    std::vector<std::string> keys;
    for (const auto& k : t.keys) {
      EXPECT_EQ(std::count(keys.begin(), keys.end(), k.name), 0) << t.type << "." << k.name;
      EXPECT_FALSE(k.description.empty()) << t.type << "." << k.name;
      keys.push_back(k.name);
    }
    EXPECT_EQ(t.windowed, std::count(keys.begin(), keys.end(), "seqlen") == 1) << t.type;
    EXPECT_EQ(find_eval_task(t.type), &t);
  }
  const auto& task_keys = eval_schema()[0].children;
  ASSERT_FALSE(task_keys.empty());
  EXPECT_EQ(task_keys[0].name, "type");
  EXPECT_EQ(task_keys[0].choices, types);
  EXPECT_EQ(find_eval_task("hellaswag"), nullptr);
}

TEST(NyuntamEval, TasksMapOntoQjobsTasks) {
  auto t = map_nyuntam_eval_task("arc_challenge:25", 4096);
  EXPECT_EQ(t["type"], "mc");
  EXPECT_EQ(t["format"], "arc");
  EXPECT_EQ(t["subset"], "ARC-Challenge");
  EXPECT_EQ(t["num_fewshot"], 25);
  EXPECT_EQ(t["fewshot_split"], "train");
  t = map_nyuntam_eval_task("wikitext", 4096);
  EXPECT_EQ(t["type"], "wikitext-ppl");
  EXPECT_EQ(t["seqlen"], 4096);
  EXPECT_EQ(map_nyuntam_eval_task("wikitext", 0)["seqlen"], 2048);
  EXPECT_EQ(map_nyuntam_eval_task("mmlu", 0)["num_fewshot"], 5);
  EXPECT_EQ(map_nyuntam_eval_task("tinyMMLU", 0)["format"], "tinymmlu");
  for (const char* bad : {"hellaswag", "arc_challenge:x", "arc_challenge:100", "wikitext:5"}) {
    const auto r = map_nyuntam_eval_task(bad, 0);
    ASSERT_TRUE(r.is_string()) << bad;
    EXPECT_NE(r.get<std::string>().find(bad), std::string::npos) << r;
  }
  EXPECT_NE(map_nyuntam_eval_task("hellaswag", 0).get<std::string>().find("arc_challenge"), std::string::npos);
}

TEST(NyuntamEval, AnUnknownTaskInAConfigIsNamedWithItsLine) {
  std::string yaml = kNyuntamLmquant;
  yaml.replace(yaml.find("arc_challenge:25"), 16, "hellaswag");
  const auto r = parse_job_spec(yaml);
  bool found = false;
  for (const auto& i : r.issues)
    if (i.path == "llm.LMQuant.eval.tasks") {
      found = true;
      EXPECT_NE(i.message.find("hellaswag"), std::string::npos) << i.message;
      EXPECT_GT(i.line, 20);
    }
  EXPECT_TRUE(found);
}

// A 12 KB spec of keys the schema accepts that expands, through aliases, to
// 1,000 eval tasks x 300 prompts x 1 KB.
std::string alias_bomb() {
  std::string y = "MODEL: m\nALGORITHM: RTN\neval:\n  tasks:\n    - &t {type: demo, prompts: [&s \"" +
                  std::string(1000, 'x') + "\"";
  for (int i = 0; i < 299; ++i) y += ", *s";
  y += "]}\n";
  for (int i = 0; i < 999; ++i) y += "    - *t\n";
  return y;
}

// Issue 11.4: a "billion laughs" of anchors and aliases is refused before it
// is expanded into spec.json (the 6 KB body of the report became 100 MB).
TEST(SpecLimits, AliasAmplificationIsRefusedBeforeExpansion) {
  // Every key is one the schema accepts: 1,000 demo tasks sharing one list
  // of 300 aliases of a 1 KB prompt expand to 300 MB.
  const std::string y = alias_bomb();
  ASSERT_LT(y.size(), 13000u);
  const auto r = parse_job_spec(y);
  EXPECT_FALSE(r.spec);
  EXPECT_TRUE(r.too_large);
  ASSERT_EQ(r.issues.size(), 1u);
  EXPECT_NE(r.issues[0].message.find("aliases"), std::string::npos) << r.issues[0].message;
  // A spec that uses an alias a sane number of times is fine.
  const auto ok = parse_job_spec("MODEL: &m m\nCUSTOM_MODEL_PATH: *m\nALGORITHM: RTN\n");
  EXPECT_TRUE(ok.spec) << (ok.issues.empty() ? "" : ok.issues[0].message);
}

// Issue 11.5: thousands of long unknown keys cost a bounded reply: at most
// kMaxSpecIssues problems plus one that counts the rest, messages cut.
TEST(SpecLimits, ManyLongUnknownKeysGiveABoundedList) {
  std::string y = "MODEL: m\nALGORITHM: RTN\n";
  for (int i = 0; i < 5000; ++i) y += "K" + std::to_string(i) + std::string(150, 'q') + ": 1\n";
  const auto r = parse_job_spec(y);
  ASSERT_EQ(r.issues.size(), kMaxSpecIssues + 1);
  EXPECT_NE(r.issues.back().message.find("4900 more problems"), std::string::npos) << r.issues.back().message;
  std::size_t bytes = 0;
  for (const auto& i : r.issues) bytes += i.message.size() + i.path.size();
  EXPECT_LT(bytes, 200000u);
  EXPECT_EQ(r.issues[0].line, 3);
}

TEST(SpecLimits, InvalidUtf8IsRefusedAtItsLineAndColumn) {
  const auto r = parse_job_spec(
      "MODEL: m\nALGORITHM: RTN\nJOB_ID: ab\xff"
      "cd\n");
  EXPECT_FALSE(r.spec);
  ASSERT_EQ(r.issues.size(), 1u);
  EXPECT_EQ(r.issues[0].line, 3);
  EXPECT_EQ(r.issues[0].column, 11);
  EXPECT_NE(r.issues[0].message.find("not valid UTF-8"), std::string::npos);
  // Escapes that yaml-cpp decodes to bytes that are not UTF-8 (found by the
  // fuzzer: "\_" became a raw 0xA0 and made spec.json throw).
  for (const char* esc : {"\\_", "\\xA0", "\\uD800"}) {
    const auto e = parse_job_spec(std::string("MODEL: m\nALGORITHM: RTN\nJOB_ID: \"a") + esc + "b\"\n");
    if (e.spec) {
      EXPECT_TRUE(valid_utf8(e.spec->job_id)) << esc;
      EXPECT_NO_THROW(to_json(*e.spec).dump()) << esc;
    } else {
      ASSERT_FALSE(e.issues.empty());
      EXPECT_EQ(e.issues[0].line, 3) << esc;
    }
  }
  EXPECT_TRUE(valid_utf8("grüße \xe2\x82\xac \xf0\x9f\x98\x80"));
  EXPECT_FALSE(valid_utf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(valid_utf8("\xed\xa0\x80"));      // a surrogate
  EXPECT_FALSE(valid_utf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(valid_utf8("ok\xe2\x82"));        // cut short
}

// Found by the fuzzer: with two `tasks:` keys, the place of a task without a
// type was looked up in the first one, and yaml-cpp threw from the lookup.
TEST(SpecLimits, DuplicateKeysNeverThrow) {
  const auto r = parse_job_spec("MODEL: m\nALGORITHM: RTN\neval:\n  tasks: {a: 1}\n  tasks:\n    - {seqlen: 8}\n");
  EXPECT_FALSE(r.spec);
  ASSERT_FALSE(r.issues.empty());
  bool typed = false;
  for (const auto& i : r.issues) typed |= i.message.find("needs a type") != std::string::npos;
  EXPECT_TRUE(typed);
}

// The banded edit distance equals the plain Levenshtein distance wherever
// that is within the limit, and says "over" elsewhere.
TEST(SpecLimits, BandedEditDistanceMatchesTheFullTable) {
  const auto full = [](const std::string& a, const std::string& b) {
    std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
    for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
    for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i)
      for (std::size_t j = 1; j <= b.size(); ++j)
        d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1])});
    return d[a.size()][b.size()];
  };
  std::mt19937 rng(3);
  for (int t = 0; t < 3000; ++t) {
    std::string a, b;
    const int la = static_cast<int>(rng() % 14), lb = static_cast<int>(rng() % 14);
    for (int i = 0; i < la; ++i) a.push_back("abc"[rng() % 3]);
    for (int i = 0; i < lb; ++i) b.push_back("abc"[rng() % 3]);
    const std::size_t limit = rng() % 6;
    const std::size_t want = full(a, b);
    EXPECT_EQ(edit_distance(a, b, limit), want <= limit ? want : limit + 1) << a << " " << b << " " << limit;
  }
  EXPECT_EQ(closest_name("W_BITS", {"W_BIT", "Q_GROUP_SIZE"}), "W_BIT");
  // Issue 31: the name meant, before the nearest by edits.
  EXPECT_EQ(closest_name("AWQ", {"RTN", "AutoAWQ", "GPTQ", "HQQ"}), "AutoAWQ");
  EXPECT_EQ(closest_name("quarot", {"RTN", "QuaRot", "GPTQ"}), "QuaRot");
  EXPECT_EQ(closest_name("w_bit", {"W_BIT", "Q_GROUP_SIZE"}), "W_BIT");
  EXPECT_EQ(closest_name("FP", {"FP8", "NVFP4", "MXFP4"}), "FP8") << "short words: edits only";
  EXPECT_EQ(closest_name("QUA", {"LMQuant", "QuaRot"}), std::nullopt) << "two contain it, none near";
  EXPECT_FALSE(closest_name(std::string(100000, 'W'), {"W_BIT"}));
}

}  // namespace
}  // namespace qjobs

namespace qjobs {
namespace {

// Issue 16: what a submission reads from the server's machine is checked
// before it is stored (SpecContext::local_files), each at its key and line.
TEST(JobSpec, SubmissionChecksLocalFilesAndTheEvalWindowAtTheirKeys) {
  namespace fs = std::filesystem;
  const auto dir = fs::temp_directory_path() / ("qjobs_local_" + std::to_string(::getpid()));
  fs::create_directories(dir / "model");
  fs::create_directories(dir / "empty_model");
  std::ofstream(dir / "model" / "config.json") << R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 128,
      "intermediate_size": 384, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
      "vocab_size": 100, "max_position_embeddings": 512})";
  std::ofstream(dir / "model" / "model.safetensors") << "";
  std::ofstream(dir / "model" / "tokenizer.json") << "{}";
  std::ofstream(dir / "calib.jsonl") << "{\"text\": \"x\"}\n";
  Environment env;
  env.data_dir = dir / "datasets";
  const SpecContext local{.local_files = true, .env = &env};
  const std::string m = "MODEL: \"" + (dir / "model").string() + "\"\n";

  // Everything present: accepted, and without the context nothing is looked at.
  const auto ok = parse_job_spec(m + "ALGORITHM: GPTQ\nDATA_PATH: \"" + (dir / "calib.jsonl").string() + "\"\n", local);
  EXPECT_TRUE(ok.spec) << (ok.issues.empty() ? "" : ok.issues[0].message);
  EXPECT_TRUE(parse_job_spec("MODEL: /no/such/model\nALGORITHM: RTN\n").spec);

  // A MODEL path that is not there is refused (it used to go to the hub).
  const auto missing = parse_job_spec("ALGORITHM: RTN\nMODEL: \"/no/such/model\"\n", local);
  ASSERT_EQ(missing.issues.size(), 1u);
  EXPECT_EQ(missing.issues[0].path, "MODEL");
  EXPECT_EQ(missing.issues[0].line, 2);
  EXPECT_NE(missing.issues[0].message.find("no model folder /no/such/model"), std::string::npos)
      << missing.issues[0].message;
  const auto relative = parse_job_spec("MODEL: \"./nowhere/model\"\nALGORITHM: RTN\n", local);
  ASSERT_EQ(relative.issues.size(), 1u);
  EXPECT_NE(relative.issues[0].message.find("working directory"), std::string::npos);
  // ORG/NAME whose ORG is a folder here is a folder (issue 31: a typo in
  // examples/... went to the hub); an ORG that is no folder stays a hub id.
  {
    const auto here = fs::current_path();
    fs::current_path(dir);
    const auto typo = parse_job_spec("MODEL: model/does-not-exist\nALGORITHM: RTN\n", local);
    const auto hub = parse_job_spec("MODEL: some-org/some-model\nALGORITHM: RTN\n", local);
    fs::current_path(here);
    ASSERT_EQ(typo.issues.size(), 1u);
    EXPECT_NE(typo.issues[0].message.find("no model folder model/does-not-exist"), std::string::npos)
        << typo.issues[0].message;
    EXPECT_TRUE(hub.spec) << (hub.issues.empty() ? "" : hub.issues[0].message);
  }
  const auto empty = parse_job_spec("MODEL: \"" + (dir / "empty_model").string() + "\"\nALGORITHM: RTN\n", local);
  ASSERT_EQ(empty.issues.size(), 1u);
  EXPECT_NE(empty.issues[0].message.find("no config.json"), std::string::npos);
  // Weights, and tokenizer.json when the job reads text.
  fs::create_directories(dir / "no_weights");
  fs::copy_file(dir / "model" / "config.json", dir / "no_weights" / "config.json");
  const auto noweights = parse_job_spec("MODEL: \"" + (dir / "no_weights").string() + "\"\nALGORITHM: RTN\n", local);
  ASSERT_EQ(noweights.issues.size(), 1u);
  EXPECT_NE(noweights.issues[0].message.find("has no weights"), std::string::npos) << noweights.issues[0].message;
  std::ofstream(dir / "no_weights" / "model.safetensors") << "";
  EXPECT_TRUE(parse_job_spec("MODEL: \"" + (dir / "no_weights").string() + "\"\nALGORITHM: RTN\n", local).spec)
      << "RTN without eval reads no text";
  const auto notok = parse_job_spec("MODEL: \"" + (dir / "no_weights").string() + "\"\nALGORITHM: GPTQ\nDATA_PATH: \"" +
                                        (dir / "calib.jsonl").string() + "\"\n",
                                    local);
  ASSERT_EQ(notok.issues.size(), 1u);
  EXPECT_NE(notok.issues[0].message.find("no tokenizer.json"), std::string::npos) << notok.issues[0].message;
  // config.json is read as the worker reads it: an architecture no family
  // table describes, or a shape key out of range, is refused at MODEL.
  const auto with_config = [&](const std::string& name, const std::string& config, const std::string& more = "") {
    fs::create_directories(dir / name);
    std::ofstream(dir / name / "config.json") << config;
    std::ofstream(dir / name / "model.safetensors") << "";
    return parse_job_spec("ALGORITHM: RTN\nMODEL: \"" + (dir / name).string() + "\"\n" + more, local);
  };
  const auto falcon = with_config("falcon", R"({"architectures": ["FalconForCausalLM"], "hidden_size": 64})");
  ASSERT_EQ(falcon.issues.size(), 1u);
  EXPECT_EQ(falcon.issues[0].path, "MODEL");
  EXPECT_EQ(falcon.issues[0].line, 2);
  EXPECT_NE(falcon.issues[0].message.find("architecture 'FalconForCausalLM' is not supported"), std::string::npos)
      << falcon.issues[0].message;
  EXPECT_NE(falcon.issues[0].message.find("MixtralForCausalLM"), std::string::npos) << "lists the known families";
  const auto zero_heads = with_config("zero_heads", R"({"architectures": ["Qwen2ForCausalLM"], "hidden_size": 64,
      "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 0, "vocab_size": 100})");
  ASSERT_EQ(zero_heads.issues.size(), 1u);
  EXPECT_NE(zero_heads.issues[0].message.find("'num_attention_heads' is 0, not in [1, 4096]"), std::string::npos)
      << zero_heads.issues[0].message;
  const auto moe = with_config("moe", R"({"architectures": ["MixtralForCausalLM"], "hidden_size": 64,
      "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100,
      "num_local_experts": 4, "num_experts_per_tok": 5})");
  ASSERT_EQ(moe.issues.size(), 1u);
  EXPECT_NE(moe.issues[0].message.find("num_experts_per_tok must be between 1 and the number of experts (4)"),
            std::string::npos)
      << moe.issues[0].message;
  // Issue 29: a config.json of 700,000 layers cost 4.5 s of CPU per dry run
  // (the export check walked every layer's Linears before the reader's
  // bound refused it). It is refused at num_hidden_layers, and the shape
  // check runs only on a config the reader takes.
  const auto huge = with_config("huge", R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 200,
      "intermediate_size": 256, "num_hidden_layers": 700000, "num_attention_heads": 4, "vocab_size": 100})",
                                "EXPORT_FORMAT: awq\nllm:\n  RTN:\n    Q_GROUP_SIZE: 64\n");
  ASSERT_EQ(huge.issues.size(), 1u) << huge.issues.back().message;
  EXPECT_EQ(huge.issues[0].path, "MODEL");
  EXPECT_NE(huge.issues[0].message.find("'num_hidden_layers' is 700000, not in [1, 4096]"), std::string::npos)
      << huge.issues[0].message;

  // And the export's layout: GGUF and ONNX write Llama's block only.
  const std::string phi3 = R"({"architectures": ["Phi3ForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
      "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100})";
  EXPECT_TRUE(with_config("phi3", phi3).spec) << "compressed-tensors holds Phi-3";
  const auto gguf = with_config("phi3", phi3, "EXPORT_FORMAT: gguf\n");
  ASSERT_EQ(gguf.issues.size(), 1u);
  EXPECT_EQ(gguf.issues[0].path, "MODEL");
  EXPECT_NE(gguf.issues[0].message.find("cannot be exported: the GGUF export writes llama.cpp's llama architecture; "
                                        "Phi3ForCausalLM has another block"),
            std::string::npos)
      << gguf.issues[0].message;
  EXPECT_NE(gguf.issues[0].message.find("export it as compressed-tensors"), std::string::npos);

  // A hub id is left to the worker (it may be downloaded).
  EXPECT_TRUE(parse_job_spec("MODEL: \"org-that-is-not-here/model\"\nALGORITHM: RTN\n", local).spec);

  // Data files, at their keys.
  const auto data = parse_job_spec(m + "ALGORITHM: GPTQ\nDATA_PATH: \"/no/such/calib.jsonl\"\n", local);
  ASSERT_EQ(data.issues.size(), 1u);
  EXPECT_EQ(data.issues[0].path, "DATA_PATH");
  EXPECT_EQ(data.issues[0].line, 3);
  const auto cal =
      parse_job_spec(m + "ALGORITHM: GPTQ\ncalibration:\n  n_samples: 4\n  data_path: /no/calib.txt\n", local);
  ASSERT_EQ(cal.issues.size(), 1u);
  EXPECT_EQ(cal.issues[0].path, "calibration.data_path");
  EXPECT_EQ(cal.issues[0].line, 5);
  const auto ev = parse_job_spec(m + "ALGORITHM: RTN\neval:\n  tasks:\n    - type: mc\n      format: arc\n"
                                     "      data_path: /no/arc.jsonl\n",
                                 local);
  ASSERT_EQ(ev.issues.size(), 1u) << ev.issues[0].path << ": " << ev.issues[0].message;
  EXPECT_EQ(ev.issues[0].path, "eval.tasks[0].data_path");
  EXPECT_EQ(ev.issues[0].line, 7);
  EXPECT_NE(ev.issues[0].message.find("Datasets"), std::string::npos) << "points at the README's dataset layout";
  // DATASET_NAME under the data root.
  const auto ds =
      parse_job_spec(m + "ALGORITHM: GPTQ\nDATASET_NAME: wikitext\nDATASET_SUBNAME: wikitext-2-raw-v1\n", local);
  ASSERT_EQ(ds.issues.size(), 1u);
  EXPECT_EQ(ds.issues[0].path, "DATASET_NAME");
  EXPECT_NE(ds.issues[0].message.find((dir / "datasets/wikitext/wikitext-2-raw-v1/train.jsonl").string()),
            std::string::npos)
      << ds.issues[0].message;
  fs::create_directories(dir / "datasets/wikitext/wikitext-2-raw-v1");
  std::ofstream(dir / "datasets/wikitext/wikitext-2-raw-v1/train.jsonl") << "{\"text\": \"x\"}\n";
  EXPECT_TRUE(
      parse_job_spec(m + "ALGORITHM: GPTQ\nDATASET_NAME: wikitext\nDATASET_SUBNAME: wikitext-2-raw-v1\n", local).spec);

  // An eval window past max_position_embeddings (512 here) is refused at its key ...
  const auto window = parse_job_spec(m + "ALGORITHM: RTN\neval:\n  tasks:\n    - type: ppl\n      data_path: \"" +
                                         (dir / "calib.jsonl").string() + "\"\n      seqlen: 1024\n",
                                     local);
  ASSERT_EQ(window.issues.size(), 1u);
  EXPECT_EQ(window.issues[0].path, "eval.tasks[0].seqlen");
  EXPECT_EQ(window.issues[0].line, 7);
  EXPECT_NE(window.issues[0].message.find("max_position_embeddings 512"), std::string::npos);
  // ... and Nyuntam's eval.max_seq_length is cut to it, with a warning
  // (its wikitext task reads WikiText-2's test split under the data root).
  std::ofstream(dir / "datasets/wikitext/wikitext-2-raw-v1/test.jsonl") << "{\"text\": \"x\"}\n";
  const auto nyuntam = parse_job_spec(m + "ALGORITHM: LMQuant\nDATA_PATH: \"" + (dir / "calib.jsonl").string() +
                                          "\"\nllm:\n  LMQuant:\n    quant_type: gchn\n    eval.tasks: [\"wikitext\"]\n"
                                          "    eval.max_seq_length: 4096\n",
                                      local);
  ASSERT_TRUE(nyuntam.spec) << (nyuntam.issues.empty() ? "" : nyuntam.issues[0].message);
  EXPECT_EQ(nyuntam.spec->eval["tasks"][0]["seqlen"], 512);
  bool said = false;
  for (const auto& w : nyuntam.spec->warnings) said = said || w.find("max_seq_length 4096") != std::string::npos;
  EXPECT_TRUE(said);
  fs::remove_all(dir);
}

// Issue 31: a k-shot task whose example split holds fewer than k rows
// passed `validate` and failed 4 s into the job ("the shot split has 10",
// naming no file). It is refused at submission, at its key, naming the file.
TEST(JobSpec, AKShotTaskNeedsKExamplesAtSubmission) {
  namespace fs = std::filesystem;
  const auto dir = fs::temp_directory_path() / ("qjobs_shots_" + std::to_string(::getpid()));
  fs::create_directories(dir / "model");
  fs::create_directories(dir / "datasets/arc");
  std::ofstream(dir / "model" / "config.json") << R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 128,
      "intermediate_size": 384, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
      "vocab_size": 100, "max_position_embeddings": 512})";
  std::ofstream(dir / "model" / "model.safetensors") << "";
  std::ofstream(dir / "model" / "tokenizer.json") << "{}";
  const auto rows = [](const fs::path& p, int n) {
    std::ofstream out(p);
    for (int i = 0; i < n; ++i) out << "{\"context\": \"q" << i << "\", \"choices\": [\"a\", \"b\"], \"gold\": 0}\n\n";
  };
  rows(dir / "datasets/arc/test.jsonl", 3);
  rows(dir / "datasets/arc/train.jsonl", 10);
  Environment env;
  env.data_dir = dir / "datasets";
  const SpecContext local{.local_files = true, .env = &env};
  const std::string head = "MODEL: \"" + (dir / "model").string() + "\"\nALGORITHM: RTN\neval:\n  tasks:\n";
  const auto task = [&](const std::string& keys) { return parse_job_spec(head + "    - type: mc\n" + keys, local); };

  const auto short_split = task("      dataset: arc\n      num_fewshot: 25\n");
  ASSERT_EQ(short_split.issues.size(), 1u);
  EXPECT_EQ(short_split.issues[0].path, "eval.tasks[0].fewshot_split");
  EXPECT_NE(short_split.issues[0].message.find("25-shot"), std::string::npos) << short_split.issues[0].message;
  EXPECT_NE(short_split.issues[0].message.find((dir / "datasets/arc/train.jsonl").string() + " has 10"),
            std::string::npos)
      << short_split.issues[0].message;
  EXPECT_TRUE(task("      dataset: arc\n      num_fewshot: 10\n").spec) << "ten examples in a split of ten";
  // From the items' own split, the item asked is never its own example.
  const auto own = task("      dataset: arc\n      num_fewshot: 3\n      fewshot_split: test\n");
  ASSERT_EQ(own.issues.size(), 1u);
  EXPECT_NE(own.issues[0].message.find("needs 4 rows"), std::string::npos) << own.issues[0].message;
  EXPECT_TRUE(task("      dataset: arc\n      num_fewshot: 2\n      fewshot_split: test\n").spec);
  // One data_path file holds the items and their examples.
  const auto file = "      data_path: \"" + (dir / "datasets/arc/test.jsonl").string() + "\"\n";
  const auto one_file = task(file + "      num_fewshot: 3\n");
  ASSERT_EQ(one_file.issues.size(), 1u);
  EXPECT_EQ(one_file.issues[0].path, "eval.tasks[0].num_fewshot");
  EXPECT_EQ(one_file.issues[0].line, 7);
  EXPECT_TRUE(task(file + "      num_fewshot: 2\n").spec);
  fs::remove_all(dir);
}

// Issue 16: keys that do nothing say so. A top-level eval wins over
// LMQuant's eval.tasks (with a warning); the quant.* keys a preset ignores
// are named; quant.enable_smooth is honoured by sq_* and not named.
TEST(JobSpec, KeysWithoutEffectAreNamedInWarnings) {
  const auto both = parse_job_spec(
      "MODEL: m\nALGORITHM: LMQuant\nDATA_PATH: d.jsonl\nllm:\n  LMQuant:\n    quant_type: gchn\n    eval.tasks: "
      "[\"wikitext\"]\n"
      "eval:\n  tasks:\n    - type: ppl\n      data_path: t.jsonl\n");
  ASSERT_TRUE(both.spec);
  ASSERT_EQ(both.spec->eval["tasks"].size(), 1u);
  EXPECT_EQ(both.spec->eval["tasks"][0]["type"], "ppl");
  bool said = false;
  for (const auto& w : both.spec->warnings)
    said = said || w.find("llm.LMQuant.eval.tasks is ignored") != std::string::npos;
  EXPECT_TRUE(said);

  const auto sq = parse_job_spec(
      "MODEL: m\nALGORITHM: LMQuant\nDATA_PATH: d.jsonl\nllm:\n  LMQuant:\n    quant_type: sq_static\n"
      "    quant.enable_smooth: false\n    quant.smooth.xw.alpha: 0.6\n    quant.enable_rotation: true\n");
  ASSERT_TRUE(sq.spec) << sq.issues[0].message;
  std::string all;
  for (const auto& w : sq.spec->warnings) all += w + "\n";
  EXPECT_NE(all.find("llm.LMQuant.quant.enable_rotation has no effect with quant_type sq_static"), std::string::npos)
      << all;
  EXPECT_EQ(all.find("llm.LMQuant.quant.enable_smooth has no effect"), std::string::npos) << all;
  EXPECT_EQ(all.find("quant.smooth.xw.alpha has no effect"), std::string::npos) << all;

  // JOB_ID is the job's name: bounded, printable.
  EXPECT_TRUE(parse_job_spec("MODEL: m\nALGORITHM: RTN\nJOB_ID: awq_quantization\n").spec);
  const auto long_name = parse_job_spec("MODEL: m\nALGORITHM: RTN\nJOB_ID: \"" + std::string(200, 'x') + "\"\n");
  ASSERT_EQ(long_name.issues.size(), 1u);
  EXPECT_EQ(long_name.issues[0].path, "JOB_ID");
}

}  // namespace
}  // namespace qjobs
