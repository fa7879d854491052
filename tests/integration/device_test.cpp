// What the worker says about its libtorch and its devices, as a user runs
// it: `--version` names the libtorch the build was pointed at (the pinned
// wheel, scripts/requirements.txt) and why CUDA is or is not usable; each
// command that computes says where; a GPU asked for where CUDA cannot run is
// an error with the reason, never a silent CPU run.
#include <gtest/gtest.h>

#include <fstream>
#include <regex>

#include "integration/harness.hpp"

namespace qjobs::testing {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kExample = fs::path(QJOBS_SOURCE_DIR) / "examples/kjv-llama";
std::string worker() { return (bin_dir() / "qjobs-worker").string(); }

std::string pinned_torch() {
  std::ifstream in(fs::path(QJOBS_SOURCE_DIR) / "scripts/requirements.txt");
  std::smatch m;
  for (std::string line; std::getline(in, line);)
    if (std::regex_match(line, m, std::regex(R"(torch==([0-9.]+).*)"))) return m[1];
  return "";
}

TEST(WorkerDevice, VersionNamesThePinnedLibtorchAndWhatCudaCanDo) {
  const auto r = run_cmd({worker(), "--version"});
  ASSERT_EQ(r.rc, 0) << r.err;
  const std::string torch = pinned_torch();
  ASSERT_FALSE(torch.empty()) << "scripts/requirements.txt pins no torch";
  EXPECT_NE(r.out.find("\nlibtorch " + torch + ","), std::string::npos) << r.out;
  const auto info = json::parse(r.out.substr(r.out.rfind('{')));
  EXPECT_EQ(info["torch"], torch);
  // Usable, or not with a reason printed beside it.
  if (info["cuda_usable"].get<bool>()) {
    EXPECT_NE(r.out.find("\nCUDA usable: "), std::string::npos) << r.out;
    EXPECT_FALSE(info["gpus"].empty());
  } else {
    EXPECT_NE(r.out.find("\nCUDA not usable: " + info["cuda_reason"].get<std::string>()), std::string::npos) << r.out;
  }
}

TEST(WorkerDevice, CommandsSayWhereTheyComputeAndRefuseGpusCudaCannotUse) {
  const fs::path root = make_temp_dir("device");
  std::ofstream(root / "tokens.json") << "[[1, 2, 3, 4, 5, 6, 7, 8]]";
  const std::vector<std::string> logits = {worker(),       "logits",
                                           "--checkpoint", kExample.string(),
                                           "--tokens",     (root / "tokens.json").string(),
                                           "--out",        (root / "l.safetensors").string()};
  const auto cpu = run_cmd(logits, {{"CUDA_VISIBLE_DEVICES", ""}});
  ASSERT_EQ(cpu.rc, 0) << cpu.err;
  EXPECT_NE(cpu.err.find("qjobs-worker logits: computing on cpu, Float"), std::string::npos) << cpu.err;
  const auto gemm =
      run_cmd({worker(), "gemm", "--m", "64", "--n", "64", "--k", "64", "--reps", "1"}, {{"CUDA_VISIBLE_DEVICES", ""}});
  ASSERT_EQ(gemm.rc, 0) << gemm.err;
  EXPECT_EQ(json::parse(gemm.out)["device"], "cpu");

  const auto version = run_cmd({worker(), "--version"});
  const auto info = json::parse(version.out.substr(version.out.rfind('{')));
  if (info["cuda_usable"].get<bool>()) GTEST_SKIP() << "CUDA is usable here: nothing to refuse";
  const std::string reason = info["cuda_reason"];
  for (const auto& argv : {logits, std::vector<std::string>{worker(), "gemm", "--m", "64", "--n", "64", "--k", "64"}}) {
    const auto r = run_cmd(argv, {{"CUDA_VISIBLE_DEVICES", "0"}});
    EXPECT_EQ(r.rc, 1) << argv[1] << " computed although GPU 0 was asked for: " << r.out;
    EXPECT_NE(r.err.find("CUDA_VISIBLE_DEVICES=0"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(reason), std::string::npos) << r.err;
  }
  fs::remove_all(root);
}

}  // namespace
}  // namespace qjobs::testing
