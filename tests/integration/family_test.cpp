// The reference families through the real worker: RTN, AutoAWQ and GPTQ at
// W4 g32 written as compressed-tensors and read back, against the same
// job's fake_quant twin.
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>
#include <ATen/core/grad_mode.h>

#include "common/job_dir.hpp"
#include "integration/harness.hpp"
#include "jobs/model/checkpoint.hpp"
#include "jobs/model/llama_model.hpp"
#include "jobs/model/safetensors.hpp"
#include "unit/reference.hpp"

namespace qjobs::testing {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

class FamilyJobs : public ::testing::TestWithParam<std::string> {};

TEST_P(FamilyJobs, W4JobsPackAsCompressedTensorsAndReadBackAsTheirFakeQuantTwin) {
  QJOBS_REQUIRE_REFERENCE(ref);
  const fs::path root = make_temp_dir("family_" + GetParam());
  // The family's random weights with the byte-level BPE of stories260K
  // (vocabulary 512, as these models'), so KJV text can calibrate them.
  const fs::path model = root / "model";
  fs::create_directories(model);
  for (const char* f : {"config.json", "model.safetensors"})
    fs::copy_file(ref / "families" / GetParam() / f, model / f);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
    fs::copy_file(ref / "models/stories260K" / f, model / f);
  const auto ids =
      model::SafetensorsFile::open(ref / "families" / GetParam() / "expected.safetensors").tensor("input_ids_long");
  const auto cfg = model::ModelConfig::from_json(json::parse(read_file(model / "config.json")));
  at::NoGradGuard no_grad;
  for (const std::string algo : {"RTN", "AutoAWQ", "GPTQ"}) {
    std::map<std::string, at::Tensor> logits;
    for (const std::string fmt : {"fake_quant", "compressed-tensors"}) {
      const fs::path spec = root / (algo + "_" + fmt + ".yaml");
      std::ofstream(spec) << "MODEL: \"" << model.string() << "\"\nALGORITHM: " << algo << "\nEXPORT_FORMAT: " << fmt
                          << "\nDATA_PATH: \""
                          << (fs::path(QJOBS_SOURCE_DIR) / "examples/data/kjv/calib.jsonl").string()
                          << "\"\ncalibration:\n  n_samples: 16\n  seqlen: 64\nllm:\n  " << algo
                          << ":\n    W_BIT: 4\n    Q_GROUP_SIZE: 32\n";
      const fs::path job = root / (algo + "_" + fmt);
      const auto r = run_cmd({(bin_dir() / "qjobs-worker").string(), "run", spec.string(), "--job-dir", job.string()});
      ASSERT_EQ(r.rc, 0) << algo << " " << fmt << "\n" << read_file(job / "logs/worker.log");
      const auto m = model::LlamaModel::load(model::Checkpoint::open(job / "model"));
      logits[fmt] = m.forward(ids);
      if (fmt == "fake_quant") continue;
      const auto qc = json::parse(read_file(job / "model/config.json"))["quantization_config"];
      EXPECT_EQ(qc["quant_method"], "compressed-tensors");
      EXPECT_EQ(qc["format"], "pack-quantized");
      const auto packed = model::Checkpoint::open(job / "model");
      for (const auto& w : model::quantized_linear_weights(cfg)) {
        const std::string stem = w.substr(0, w.size() - 7);
        EXPECT_TRUE(packed.has(stem + ".weight_packed")) << stem;
        EXPECT_FALSE(packed.has(w)) << w;
      }
      // Routers stay float and are named in ignore (the groups target every Linear).
      for (const auto& name : model::full_precision_linears(cfg)) {
        EXPECT_TRUE(packed.has(name + ".weight")) << name;
        EXPECT_NE(std::find(qc["ignore"].begin(), qc["ignore"].end(), json(name)), qc["ignore"].end()) << name;
      }
      EXPECT_LT(fs::file_size(job / "model/model.safetensors"), fs::file_size(model / "model.safetensors") * 0.6);
      if (cfg.moe.experts > 0) {
        const auto report = json::parse(read_file(job / "report.json"));
        if (algo != "RTN") {
          EXPECT_EQ(report["experts"].size(), static_cast<std::size_t>(cfg.layers)) << report.dump().substr(0, 500);
          EXPECT_NE(read_file(job / "report.md").find("## Calibration tokens per expert"), std::string::npos);
        }
      }
    }
    const auto& a = logits["fake_quant"];
    const auto& b = logits["compressed-tensors"];
    const double rel = ((a - b).abs().max() / a.abs().max()).item<double>();
    EXPECT_LE(rel, 1e-5) << GetParam() << " " << algo << ": packed vs fake_quant logits";
  }
  fs::remove_all(root);
}

INSTANTIATE_TEST_SUITE_P(Families, FamilyJobs,
                         ::testing::Values("tiny-mixtral", "tiny-qwen2-moe", "tiny-phi3", "tiny-gemma2", "tiny-qwen3"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (auto& c : n)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

}  // namespace
}  // namespace qjobs::testing
