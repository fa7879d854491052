// Artifact paths never leave the job directory.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "server/artifacts.hpp"

namespace qjobs::server {
namespace {
namespace fs = std::filesystem;

TEST(Artifacts, ResolveRefusesEveryEscape) {
  const fs::path base = fs::temp_directory_path() / ("qjobs_art_" + std::to_string(::getpid()));
  fs::remove_all(base);
  fs::create_directories(base / "job" / "model");
  std::ofstream(base / "job" / "model" / "config.json") << "{}";
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

  const auto list = list_artifacts(job);
  ASSERT_EQ(list.size(), 1u);  // symlinks are not listed
  EXPECT_EQ(list[0].path, "model/config.json");
  EXPECT_EQ(list[0].size, 2u);
  // sha256("{}"), from coreutils' sha256sum.
  EXPECT_EQ(list[0].sha256, "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
  fs::remove_all(base);
}

}  // namespace
}  // namespace qjobs::server
