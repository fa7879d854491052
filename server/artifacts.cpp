#include "server/artifacts.hpp"

#include <algorithm>
#include <fstream>

#include "common/digest.hpp"
#include "common/error.hpp"

namespace qjobs::server {
namespace fs = std::filesystem;

std::string sha256_file(const fs::path& p) { return Digest().update_file(p).hex(); }

std::vector<ArtifactInfo> list_artifacts(const fs::path& root) {
  std::vector<ArtifactInfo> out;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return out;
  for (auto it = fs::recursive_directory_iterator(root, fs::directory_options::skip_permission_denied, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    if (it->is_symlink(ec)) {
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file(ec)) continue;
    const auto rel = fs::relative(it->path(), root, ec).generic_string();
    // Temporary files of an atomic write in progress are not artifacts.
    if (rel.find(".tmp.") != std::string::npos) continue;
    try {
      out.push_back({rel, it->file_size(ec), sha256_file(it->path())});
    } catch (const Error&) {
      // The file vanished while listing (a rename in progress): skip it.
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.path < b.path; });
  return out;
}

nlohmann::json to_json(const ArtifactInfo& a) {
  return {{"path", a.path}, {"size", a.size}, {"sha256", a.sha256}};
}

std::optional<fs::path> resolve_artifact(const fs::path& root, const std::vector<std::string>& segments) {
  if (segments.empty()) return std::nullopt;
  fs::path rel;
  for (const auto& s : segments) {
    if (s.empty() || s == "." || s == ".." || s.find('/') != std::string::npos ||
        s.find('\\') != std::string::npos || s.find('\0') != std::string::npos)
      return std::nullopt;
    rel /= s;
  }
  std::error_code ec;
  const fs::path real_root = fs::canonical(root, ec);
  if (ec) return std::nullopt;
  const fs::path real = fs::canonical(real_root / rel, ec);
  if (ec) return std::nullopt;
  const std::string r = real_root.string() + "/";
  if (real.string().compare(0, r.size(), r) != 0) return std::nullopt;
  if (!fs::is_regular_file(real, ec)) return std::nullopt;
  return real;
}

}  // namespace qjobs::server
