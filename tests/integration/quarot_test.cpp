// ALGORITHM QuaRot, checked from outside qjobs (tests/reference/quarot_check.py):
// the rotation recovered from the job's checkpoint is a (signed) Hadamard
// matrix, the rotation rebuilt from the paper's definition preserves the
// original model's logits in transformers, the job's weights are round to
// nearest of that rebuilt rotation, and the packed checkpoint, read by
// compressed-tensors and transformers, is the fake_quant twin.
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "common/job_dir.hpp"
#include "integration/harness.hpp"

namespace qjobs::testing {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kSource = fs::path(QJOBS_SOURCE_DIR);
const fs::path kExample = kSource / "examples/kjv-llama";

struct QuarotJobs {
  fs::path root;

  // The job's model/ folder, run by the real worker.
  fs::path run(const std::string& name, const std::string& algo, const std::string& format, const std::string& keys) {
    const fs::path spec = root / (name + ".yaml");
    std::ofstream(spec) << "MODEL: \"" << kExample.string() << "\"\nALGORITHM: " << algo
                        << "\nEXPORT_FORMAT: " << format << "\nDATA_PATH: \""
                        << (kSource / "examples/data/kjv/calib.jsonl").string()
                        << "\"\ncalibration:\n  n_samples: 16\n  seqlen: 128\nllm:\n  " << algo << ":\n"
                        << keys;
    const auto r =
        run_cmd({(bin_dir() / "qjobs-worker").string(), "run", spec.string(), "--job-dir", (root / name).string()});
    EXPECT_EQ(r.rc, 0) << read_file(root / name / "logs/worker.log");
    return root / name / "model";
  }

  fs::path tokens() const {
    const fs::path t = root / "tokens.json";
    std::ofstream(t) << "[[1, 45, 300, 7, 99, 512, 3, 18, 640, 2, 77, 901, 4, 5], "
                        "[1, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]]";
    return t;
  }

  // qjobs' logits of `model` on tokens().
  fs::path logits(const fs::path& model, const std::string& name) const {
    const fs::path out = root / (name + ".logits.safetensors");
    const auto l = run_cmd({(bin_dir() / "qjobs-worker").string(), "logits", "--checkpoint", model.string(), "--tokens",
                            tokens().string(), "--out", out.string()});
    EXPECT_EQ(l.rc, 0) << l.err;
    return out;
  }

  CmdResult check(const fs::path& fake, const fs::path& logits, const std::vector<std::string>& flags) const {
    std::vector<std::string> argv = {python(),          (kSource / "tests/reference/quarot_check.py").string(),
                                     kExample.string(), fake.string(),
                                     tokens().string(), logits.string()};
    argv.insert(argv.end(), flags.begin(), flags.end());
    return run_cmd(argv);
  }
};

// ROTATION hadamard with RTN, 4 bits in groups of 32: the weights are the
// re-implementation's to the code; the packed compressed-tensors checkpoint
// (rotated embedding, untied lm_head, norms of 1) loads in the reference
// stack as the twin, and is smaller.
TEST(QuaRot, HadamardRtnIsThePapersRotationRoundedToNearest) {
  QuarotJobs jobs{make_temp_dir("quarot")};
  const std::string keys = "    ROTATION: hadamard\n    W_BIT: 4\n    Q_GROUP_SIZE: 32\n";
  const fs::path fake = jobs.run("fake", "QuaRot", "fake_quant", keys);
  const fs::path packed = jobs.run("packed", "QuaRot", "compressed-tensors", keys);
  const auto config = json::parse(read_file(packed / "config.json"));
  EXPECT_EQ(config["tie_word_embeddings"], false);
  EXPECT_EQ(config["quantization_config"]["quant_method"], "compressed-tensors");
  EXPECT_LT(dir_size(packed), dir_size(fake) * 0.6);

  const fs::path logits = jobs.logits(packed, "packed");
  const auto c = jobs.check(fake, logits, {"--bits", "4", "--group", "32", "--rtn", "--expect", "plain"});
  EXPECT_EQ(c.rc, 0) << c.out << c.err.substr(c.err.size() > 3000 ? c.err.size() - 3000 : 0);
  std::cout << "quarot_check (hadamard, RTN g32): " << c.out;
  const auto figures = json::parse(c.out.substr(0, c.out.find('\n')), nullptr, false);
  ASSERT_TRUE(figures.is_object()) << c.out;
  EXPECT_EQ(figures["q_negative_signs"], 0);

  const auto ct = run_cmd({python(), (kSource / "tests/reference/ct_check.py").string(), packed.string(), fake.string(),
                           jobs.tokens().string(), logits.string(), "--weight-tol", "0", "--logit-rtol", "1e-4"});
  EXPECT_EQ(ct.rc, 0) << ct.out << ct.err.substr(ct.err.size() > 3000 ? ct.err.size() - 3000 : 0);
  std::cout << "ct_check: " << ct.out;
  fs::remove_all(jobs.root);
}

// ROTATION random_hadamard with GPTQ in groups of 64 (down_proj's 352 inputs
// per channel, the pipeline's rule): the recovered rotation has mixed column
// signs and still preserves the function; the packed checkpoint gives
// transformers' logits of the twin. The same check refuses an unrotated RTN
// model: it can fail.
TEST(QuaRot, RandomHadamardGptqIsASignedRotationAndPacks) {
  QuarotJobs jobs{make_temp_dir("quarot_gptq")};
  const std::string keys = "    QUANTIZER: GPTQ\n    W_BIT: 4\n    Q_GROUP_SIZE: 64\n";
  const fs::path fake = jobs.run("fake", "QuaRot", "fake_quant", keys);
  const fs::path packed = jobs.run("packed", "QuaRot", "compressed-tensors", keys);
  const auto report = json::parse(read_file(jobs.root / "fake/report.json"));
  EXPECT_EQ(report["quantization_config"]["quantizer"], "GPTQ");
  EXPECT_EQ(report["quantization_config"]["rotation"], "random_hadamard");
  const auto c =
      jobs.check(fake, jobs.logits(packed, "packed"), {"--bits", "4", "--group", "64", "--expect", "signed"});
  EXPECT_EQ(c.rc, 0) << c.out << c.err.substr(c.err.size() > 3000 ? c.err.size() - 3000 : 0);
  std::cout << "quarot_check (random_hadamard, GPTQ g64): " << c.out;

  const fs::path plain = jobs.run("rtn", "RTN", "fake_quant", "    W_BIT: 4\n    Q_GROUP_SIZE: 64\n");
  const auto refused = jobs.check(plain, jobs.logits(plain, "rtn"), {"--bits", "4", "--group", "64"});
  EXPECT_EQ(refused.rc, 1) << refused.out;
  EXPECT_NE(refused.out.find("not a signed Hadamard matrix"), std::string::npos) << refused.out;
  fs::remove_all(jobs.root);
}

}  // namespace
}  // namespace qjobs::testing
