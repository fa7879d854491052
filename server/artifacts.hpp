// The files of a job directory as the API exposes them. No path handed out or
// accepted here may leave the job directory: names are decoded segment by
// segment, "..", ".", empty and NUL-bearing segments are refused, and the
// resolved real path (symlinks followed) must stay inside the directory's
// real path.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qjobs::server {

struct ArtifactInfo {
  std::string path;    // relative to the job directory, '/'-separated
  uint64_t size = 0;
  std::string sha256;  // lowercase hex
};

// Regular files under `root` (symlinks are skipped), sorted by path, with
// sizes and sha256. Reads every file: run it off the event loop.
std::vector<ArtifactInfo> list_artifacts(const std::filesystem::path& root);

nlohmann::json to_json(const ArtifactInfo& a);

// The file that the decoded `segments` name inside `root`, or nullopt when
// they are unsafe, leave `root`, or do not name a regular file.
std::optional<std::filesystem::path> resolve_artifact(const std::filesystem::path& root,
                                                      const std::vector<std::string>& segments);

std::string sha256_file(const std::filesystem::path& p);  // throws Error(io)

}  // namespace qjobs::server
