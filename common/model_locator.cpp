#include "common/model_locator.hpp"

#include <filesystem>
#include <fstream>

#include "common/strings.hpp"

namespace qjobs {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::optional<fs::path> cached_snapshot(const fs::path& repo) {
  std::error_code ec;
  std::string revision = "main";
  if (std::ifstream ref(repo / "refs" / "main"); ref) std::getline(ref, revision);
  const fs::path snapshot = repo / "snapshots" / trim(revision);
  if (fs::exists(snapshot / "config.json", ec)) return snapshot;
  if (fs::is_directory(repo / "snapshots", ec))
    for (const auto& e : fs::directory_iterator(repo / "snapshots", ec))
      if (fs::exists(e.path() / "config.json", ec)) return e.path();
  return std::nullopt;
}

}  // namespace

std::optional<std::string> find_local_model_dir(const std::string& model, const std::vector<fs::path>& hub_caches) {
  std::error_code ec;
  if (model.empty() || model.size() > 4096) return std::nullopt;
  if (fs::is_directory(model, ec)) return fs::absolute(model, ec).string();
  const auto parts = split(model, '/');
  if (parts.size() != 2 || parts[0].empty() || parts[1].empty() || model.find("..") != std::string::npos)
    return std::nullopt;
  for (const auto& cache : hub_caches)
    if (auto snap = cached_snapshot(cache / ("models--" + parts[0] + "--" + parts[1]))) return snap->string();
  return std::nullopt;
}

std::optional<json> find_model_config(const std::string& model, const std::vector<fs::path>& hub_caches) {
  const auto dir = find_local_model_dir(model, hub_caches);
  if (!dir) return std::nullopt;
  const fs::path file = fs::path(*dir) / "config.json";
  std::error_code ec;
  const auto size = fs::file_size(file, ec);
  if (ec || size > (1u << 20)) return std::nullopt;
  std::ifstream in(file, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  return j;
}

std::optional<std::filesystem::path> find_split_file(const std::filesystem::path& dir, const std::string& split) {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (const char* ext : {".jsonl", ".json", ".txt"})
    if (fs::is_regular_file(dir / (split + ext), ec)) return dir / (split + ext);
  if (fs::is_directory(dir, ec))
    for (const auto& e : fs::directory_iterator(dir, ec))
      if (e.path().filename().string().rfind(split + "-", 0) == 0) return e.path();
  return std::nullopt;
}

}  // namespace qjobs
