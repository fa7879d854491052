// The GPU compute path on the CPU: a job with DTYPE: bfloat16 calibrates,
// evaluates and packs in bfloat16 (statistics in float32), as it would on a
// GPU, for every calibrating algorithm. Each ends with a packed checkpoint
// smaller than the model, and scores within 1% of the same job in float32.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <fstream>

#include "integration/harness.hpp"

namespace qjobs::testing {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kExample = fs::path(QJOBS_SOURCE_DIR) / "examples/kjv-llama";
const fs::path kData = fs::path(QJOBS_SOURCE_DIR) / "examples/data/kjv";

struct Case {
  std::string algorithm;
  std::string params;  // the llm.<ALGORITHM> section's lines
};

json run_job(const fs::path& root, const Case& c, const std::string& dtype) {
  const fs::path spec = root / (dtype + ".yaml"), job = root / dtype;
  std::ofstream(spec) << "MODEL: \"" << kExample.string() << "\"\nALGORITHM: " << c.algorithm << "\nDTYPE: " << dtype
                      << "\nllm:\n  " << c.algorithm << ":\n"
                      << c.params << "calibration:\n  data_path: \"" << (kData / "calib.jsonl").string()
                      << "\"\n  n_samples: 16\n  seqlen: 256\n"
                      << "eval:\n  tasks:\n    - type: ppl\n      name: kjv\n      data_path: \""
                      << (kData / "test.jsonl").string() << "\"\n      seqlen: 256\n      num_samples: 16\n";
  const auto r = run_cmd({(bin_dir() / "qjobs-worker").string(), "run", spec.string(), "--job-dir", job.string()});
  EXPECT_EQ(r.rc, 0) << c.algorithm << " " << dtype << ": "
                     << r.err.substr(r.err.size() > 4000 ? r.err.size() - 4000 : 0);
  if (!fs::exists(job / "report.json")) return json::object();
  auto rep = json::parse(std::ifstream(job / "report.json"));
  rep["status"] = json::parse(std::ifstream(job / "status.json"));
  return rep;
}

class Bf16OnCpu : public ::testing::TestWithParam<Case> {};

TEST_P(Bf16OnCpu, PacksAndScoresWithinOnePercentOfFloat32) {
  const auto& c = GetParam();
  const fs::path root = make_temp_dir("bf16_" + c.algorithm);
  const json f32 = run_job(root, c, "float32"), bf16 = run_job(root, c, "bfloat16");
  ASSERT_TRUE(f32.contains("eval") && bf16.contains("eval")) << f32.dump() << bf16.dump();
  EXPECT_EQ(bf16["status"]["state"], "SUCCEEDED") << bf16["status"].dump();
  EXPECT_EQ(bf16["memory"]["placement"], "cpu, BFloat16");
  EXPECT_EQ(f32["memory"]["placement"], "cpu, Float");
  EXPECT_EQ(bf16["runtime"]["torch"].get<std::string>().substr(0, 2), "2.") << bf16["runtime"].dump();
  // Packed: the checkpoint on disk is smaller than the float32 model.
  EXPECT_LT(bf16["size_mib"]["after"].get<double>(), 0.7 * bf16["size_mib"]["before"].get<double>());
  // Both compute their own baseline (the original model in each dtype).
  const double ppl_f32 = f32["eval"]["quantized"]["kjv"]["ppl"], ppl_bf16 = bf16["eval"]["quantized"]["kjv"]["ppl"];
  const double base_f32 = f32["eval"]["original"]["kjv"]["ppl"], base_bf16 = bf16["eval"]["original"]["kjv"]["ppl"];
  RecordProperty("ppl_float32", std::to_string(ppl_f32));
  RecordProperty("ppl_bfloat16", std::to_string(ppl_bf16));
  RecordProperty("original_float32", std::to_string(base_f32));
  RecordProperty("original_bfloat16", std::to_string(base_bf16));
  std::cout << "bf16-table | " << c.algorithm << " | " << base_f32 << " | " << base_bf16 << " | " << ppl_f32 << " | "
            << ppl_bf16 << " | " << 100.0 * (ppl_bf16 / ppl_f32 - 1.0) << "% |\n";
  EXPECT_NEAR(ppl_bf16 / ppl_f32, 1.0, 0.01) << c.algorithm << ": float32 " << ppl_f32 << ", bfloat16 " << ppl_bf16;
  EXPECT_NEAR(base_bf16 / base_f32, 1.0, 0.01);
  fs::remove_all(root);
}

INSTANTIATE_TEST_SUITE_P(Algorithms, Bf16OnCpu,
                         ::testing::Values(Case{"RTN", "    W_BIT: 4\n    Q_GROUP_SIZE: 32\n"},
                                           Case{"AutoAWQ", "    W_BIT: 4\n    Q_GROUP_SIZE: 32\n"},
                                           Case{"GPTQ", "    W_BIT: 4\n    Q_GROUP_SIZE: 32\n"},
                                           Case{"SmoothQuant", "    alpha: 0.5\n"},
                                           Case{"FP8", "    kv_cache: false\n"}, Case{"NVFP4", "    ACT: dynamic\n"}),
                         [](const auto& info) { return info.param.algorithm; });

}  // namespace
}  // namespace qjobs::testing
