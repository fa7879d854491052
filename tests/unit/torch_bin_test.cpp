// pytorch_model.bin (torch.save's zip + pickle layout) against files written
// by tests/tools/safetensors_to_torch_bin.py, which lays them out with
// Python's own pickle and zipfile modules: tied storages, views at offsets
// into a shared storage, transposed strides and shards must all read back as
// the safetensors original.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <ATen/core/grad_mode.h>

#include "common/error.hpp"
#include "jobs/model/checkpoint.hpp"
#include "jobs/model/llama_model.hpp"
#include "jobs/model/random_model.hpp"
#include "jobs/model/torch_bin.hpp"

namespace qjobs::model {
namespace {
namespace fs = std::filesystem;

fs::path temp(const std::string& name) {
  return fs::temp_directory_path() / ("qjobs_bin_" + std::to_string(::getpid()) + "_" + name);
}

// Converts `src` with the Python writer; skips when python3 is missing.
bool convert(const fs::path& src, const fs::path& dst, const std::string& flags) {
  const std::string cmd = "python3 " + std::string(QJOBS_SOURCE_DIR) + "/tests/tools/safetensors_to_torch_bin.py " +
                          src.string() + " " + dst.string() + " " + flags;
  return std::system(cmd.c_str()) == 0;
}

struct Case {
  std::string name;
  bool tie;
  std::string dtype;
  std::string flags;
};

class TorchBin : public ::testing::TestWithParam<Case> {};

TEST_P(TorchBin, ReadsBackEveryTensorAndTheSameLogits) {
  if (std::system("python3 -c 'import zipfile, pickle' 2>/dev/null") != 0) GTEST_SKIP() << "python3 not installed";
  const auto& c = GetParam();
  const auto src = temp(c.name + "_st");
  const auto dst = temp(c.name + "_bin");
  RandomModelOptions o;
  o.tie_embeddings = c.tie;
  o.dtype = c.dtype;
  o.seed = 7;
  write_random_llama(src, o);
  ASSERT_TRUE(convert(src, dst, c.flags));
  ASSERT_FALSE(fs::exists(dst / "model.safetensors"));

  const auto st = Checkpoint::open(src);
  const auto bin = Checkpoint::open(dst);
  for (const auto& name : st.tensor_names()) {
    ASSERT_TRUE(bin.has(name)) << name;
    const auto a = st.tensor(name);
    const auto b = bin.tensor(name);
    EXPECT_EQ(a.scalar_type(), b.scalar_type()) << name;
    EXPECT_TRUE(at::equal(a, b)) << name;
  }
  const auto ids = at::arange(0, 24, at::kLong).remainder(o.vocab).view({2, 12});
  at::NoGradGuard no_grad;
  const auto want = LlamaModel::load(st).forward(ids);
  const auto got = LlamaModel::load(bin).forward(ids);
  EXPECT_TRUE(at::equal(want, got)) << "max |diff| " << (want - got).abs().max().item<double>();
  fs::remove_all(src);
  fs::remove_all(dst);
}

INSTANTIATE_TEST_SUITE_P(Layouts, TorchBin,
                         ::testing::Values(Case{"plain", false, "float32", ""},
                                           Case{"views", true, "float32", "--tie --fused --transposed"},
                                           Case{"bf16_shards", false, "bfloat16", "--fused --shards 3"}),
                         [](const auto& info) { return info.param.name; });

TEST(TorchBinErrors, RefusesGlobalsOutsideAStateDict) {
  if (std::system("python3 -c 'import zipfile' 2>/dev/null") != 0) GTEST_SKIP() << "python3 not installed";
  // A pickle that would call os.system when loaded by Python.
  const auto dir = temp("evil");
  fs::create_directories(dir);
  const std::string script =
      "import zipfile\n"
      "pkl = b'\\x80\\x02cos\\nsystem\\nq\\x00X\\x04\\x00\\x00\\x00trueq\\x01\\x85q\\x02Rq\\x03.'\n"
      "with zipfile.ZipFile('" +
      (dir / "pytorch_model.bin").string() +
      "', 'w') as z:\n"
      "    z.writestr('archive/data.pkl', pkl)\n"
      "    z.writestr('archive/version', '3\\n')\n";
  std::ofstream(dir / "w.py") << script;
  ASSERT_EQ(std::system(("python3 " + (dir / "w.py").string()).c_str()), 0);
  try {
    TorchBinFile::open(dir / "pytorch_model.bin");
    FAIL() << "a pickle calling os.system was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::data_corruption);
    EXPECT_NE(std::string(e.what()).find("os.system"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("pytorch_model.bin"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

TEST(TorchBinErrors, LegacyAndTruncatedFilesAreNamed) {
  const auto dir = temp("legacy");
  fs::create_directories(dir);
  std::ofstream(dir / "pytorch_model.bin", std::ios::binary) << std::string("\x80\x02\x8a\x0a", 4) << "legacy";
  try {
    TorchBinFile::open(dir / "pytorch_model.bin");
    FAIL() << "legacy file accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::data_corruption);
    EXPECT_NE(std::string(e.what()).find("legacy"), std::string::npos) << e.what();
  }
  if (std::system("python3 -c 'import zipfile' 2>/dev/null") == 0) {
    const auto src = temp("trunc_st");
    RandomModelOptions o;
    write_random_llama(src, o);
    ASSERT_TRUE(convert(src, dir / "m", ""));
    const auto p = dir / "m" / "pytorch_model.bin";
    fs::resize_file(p, fs::file_size(p) / 2);
    EXPECT_THROW(Checkpoint::open(dir / "m"), Error);
    fs::remove_all(src);
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace qjobs::model
