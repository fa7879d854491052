#include "jobs/model/model_source.hpp"

#include <cstdlib>
#include <fstream>
#include <optional>
#include <vector>

#include "common/error.hpp"
#include "common/strings.hpp"
#include "jobs/model/hub_download.hpp"

namespace qjobs::model {
namespace fs = std::filesystem;

namespace {

// The hub caches to look in: the server's ($QJOBS_CACHE_DIR/hub) and the user's.
std::vector<fs::path> hub_caches() {
  std::vector<fs::path> out;
  if (const char* q = std::getenv("QJOBS_CACHE_DIR"); q && *q) out.push_back(fs::path(q) / "hub");
  if (const char* c = std::getenv("HF_HUB_CACHE"); c && *c) out.push_back(c);
  else if (const char* h = std::getenv("HF_HOME"); h && *h) out.push_back(fs::path(h) / "hub");
  else out.push_back(fs::path(std::getenv("HOME") ? std::getenv("HOME") : "/root") / ".cache" / "huggingface" / "hub");
  return out;
}

std::optional<fs::path> cached_snapshot(const fs::path& repo) {
  std::string revision = "main";
  if (std::ifstream ref(repo / "refs" / "main"); ref) std::getline(ref, revision);
  const fs::path snapshot = repo / "snapshots" / trim(revision);
  if (fs::exists(snapshot / "config.json")) return snapshot;
  if (fs::is_directory(repo / "snapshots"))
    for (const auto& e : fs::directory_iterator(repo / "snapshots"))
      if (fs::exists(e.path() / "config.json")) return e.path();
  return std::nullopt;
}

}  // namespace

fs::path resolve_model_dir(const std::string& model, const std::function<void(uint64_t, uint64_t)>& progress) {
  const fs::path local(model);
  if (fs::is_directory(local)) return fs::absolute(local);

  const auto parts = split(model, '/');
  const bool hub_id = parts.size() == 2 && !parts[0].empty() && !parts[1].empty() &&
                      model.find("..") == std::string::npos;
  if (!hub_id)
    throw Error(ErrorKind::not_found, "model '" + model + "' is not a directory and not a hub id (ORG/NAME)");

  const std::string folder = "models--" + parts[0] + "--" + parts[1];
  for (const auto& cache : hub_caches())
    if (auto snap = cached_snapshot(cache / folder)) return *snap;
  const char* offline = std::getenv("HF_HUB_OFFLINE");
  if (offline && std::string(offline) != "0" && *offline)
    throw Error(ErrorKind::not_found, "model '" + model + "' is not a local directory and not in the Hugging Face cache (" +
                                          (hub_caches().front() / folder).string() +
                                          "), and HF_HUB_OFFLINE is set, so it is not downloaded");
  return download_model(model, hub_options_from_env(), progress);
}

}  // namespace qjobs::model
