// Artifact paths never leave the job directory.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <sys/stat.h>
#include <unistd.h>

#include "common/job_dir.hpp"
#include "server/artifacts.hpp"

namespace qjobs::server {
namespace {
namespace fs = std::filesystem;

TEST(Artifacts, ResolveRefusesEveryEscape) {
  const fs::path base = fs::temp_directory_path() / ("qjobs_art_" + std::to_string(::getpid()));
  fs::remove_all(base);
  fs::create_directories(base / "job" / "model");
  std::ofstream(base / "job" / "model" / "config.json") << "{}";
  // A running job's resume state is not listed (issue 31: the dashboard showed it as artifacts).
  fs::create_directories(base / "job" / "calib_state" / "scratch");
  std::ofstream(base / "job" / "calib_state" / "scratch" / "block-0.safetensors") << "x";
  std::ofstream(base / "secret.txt") << "secret";
  fs::create_symlink(base / "secret.txt", base / "job" / "link.txt");
  fs::create_directory_symlink(base, base / "job" / "up");

  const fs::path job = base / "job";
  EXPECT_TRUE(resolve_artifact(job, {"model", "config.json"}));
  EXPECT_FALSE(resolve_artifact(job, {"..", "secret.txt"}));
  EXPECT_FALSE(resolve_artifact(job, {"model", "..", "..", "secret.txt"}));
  EXPECT_FALSE(resolve_artifact(job, {"../secret.txt"}));
  EXPECT_FALSE(resolve_artifact(job, {"", "etc", "passwd"}));
  EXPECT_FALSE(resolve_artifact(job, {"link.txt"}));
  EXPECT_FALSE(resolve_artifact(job, {"up", "secret.txt"}));
  EXPECT_FALSE(resolve_artifact(job, {"model"}));  // a folder is not a file
  EXPECT_FALSE(resolve_artifact(job, {}));
  EXPECT_FALSE(resolve_artifact(job, {std::string("model\0x", 7)}));

  ChecksumCache cache;
  const auto list = list_artifacts(job, cache);
  ASSERT_EQ(list.size(), 1u);  // symlinks are not listed
  EXPECT_EQ(list[0].path, "model/config.json");
  EXPECT_EQ(list[0].size, 2u);
  // sha256("{}"), from coreutils' sha256sum.
  EXPECT_EQ(list[0].sha256, "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
  fs::remove_all(base);
}

// Issue 29: links are never followed, even to a file inside the job; a
// planted FIFO is neither listed nor opened (it would block the reader); a
// file whose checksum is not known yet is listed at once as pending, hashed
// in the background, and hashed again once it changes.
TEST(Artifacts, LinksAndFifosAreNeverReadAndLargeFilesAreHashedOffTheRequest) {
  const fs::path base = fs::temp_directory_path() / ("qjobs_art2_" + std::to_string(::getpid()));
  fs::remove_all(base);
  const fs::path job = base / "job";
  fs::create_directories(job / "model");
  std::ofstream(job / "model" / "config.json") << "{}";
  fs::create_symlink("config.json", job / "model" / "alias.json");  // inside the job, still a link
  fs::create_directory_symlink("model", job / "eval");
  ASSERT_EQ(::mkfifo((job / "report.json").c_str(), 0644), 0);
  {
    std::ofstream big(job / "model" / "weights.bin", std::ios::binary);
    const std::string block(1 << 16, 'w');
    for (int i = 0; i < 64; ++i) big << block;  // 4 MiB
  }
  EXPECT_TRUE(resolve_artifact(job, {"model", "config.json"}));
  EXPECT_FALSE(resolve_artifact(job, {"model", "alias.json"}));
  EXPECT_FALSE(resolve_artifact(job, {"eval", "config.json"}));
  EXPECT_FALSE(resolve_artifact(job, {"report.json"}));

  std::string problem;
  EXPECT_FALSE(read_job_file(job, "report.json", 1 << 20, &problem));
  EXPECT_NE(problem.find("not a regular file"), std::string::npos) << problem;
  EXPECT_FALSE(read_job_file(job, "eval/config.json", 1 << 20, &problem));
  EXPECT_NE(problem.find("symbolic link"), std::string::npos) << problem;
  EXPECT_FALSE(read_job_file(job, "model/weights.bin", 1 << 20, &problem));
  EXPECT_NE(problem.find("at most 1048576"), std::string::npos) << problem;
  EXPECT_FALSE(read_job_file(job, "absent.json", 1 << 20, &problem));
  EXPECT_TRUE(problem.empty()) << problem;
  EXPECT_EQ(read_job_file(job, "model/config.json", 1 << 20, &problem).value_or("?"), "{}");

  ChecksumCache cache(ChecksumCache::Options{.inline_bytes = 1 << 20, .inline_budget = 16 << 20});
  auto list = list_artifacts(job, cache);
  ASSERT_EQ(list.size(), 2u);  // config.json and weights.bin: no link, no FIFO
  EXPECT_EQ(list[0].path, "model/config.json");
  EXPECT_EQ(list[0].sha256, "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
  EXPECT_EQ(list[1].path, "model/weights.bin");
  EXPECT_EQ(list[1].size, 4u << 20);
  EXPECT_EQ(to_json(list[1])["sha256"], nullptr);
  EXPECT_EQ(to_json(list[1])["sha256_pending"], true);
  cache.drain();
  list = list_artifacts(job, cache);
  // sha256 of 4 MiB of 'w', from Python's hashlib.
  EXPECT_EQ(list[1].sha256, "26dc83649491c2861e5597ccff4afab40efa534e3a4a343258e37d16bbd73fb9");
  std::ofstream(job / "model" / "weights.bin", std::ios::app) << "x";
  list = list_artifacts(job, cache);
  EXPECT_EQ(list[1].sha256, "") << "a changed file is hashed again";
  fs::remove_all(base);
}

// The nesting scan that runs before any report or status is parsed.
TEST(JobFiles, JsonDepthIsScannedWithoutParsing) {
  EXPECT_EQ(json_text_depth("{}", 64), 1);
  EXPECT_EQ(json_text_depth(R"({"a": [1, {"b": "[[[["}], "c": "\"{"})", 64), 3);
  EXPECT_EQ(json_text_depth(std::string(100000, '[') + std::string(100000, ']'), 64), 65);
  std::string problem;
  EXPECT_FALSE(parse_job_json(std::string(100000, '['), 32, &problem));
  EXPECT_NE(problem.find("deeper than 32"), std::string::npos) << problem;
  EXPECT_TRUE(parse_job_json(R"({"a": [[1]]})", 32, &problem));
}

}  // namespace
}  // namespace qjobs::server
