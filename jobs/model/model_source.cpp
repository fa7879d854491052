#include "jobs/model/model_source.hpp"

#include <cstdlib>
#include <fstream>

#include "common/error.hpp"
#include "common/strings.hpp"

namespace qjobs::model {
namespace fs = std::filesystem;

namespace {

fs::path hf_hub_cache() {
  if (const char* c = std::getenv("HF_HUB_CACHE"); c && *c) return c;
  if (const char* h = std::getenv("HF_HOME"); h && *h) return fs::path(h) / "hub";
  const char* home = std::getenv("HOME");
  return fs::path(home ? home : "/root") / ".cache" / "huggingface" / "hub";
}

}  // namespace

fs::path resolve_model_dir(const std::string& model) {
  const fs::path local(model);
  if (fs::is_directory(local)) return fs::absolute(local);

  const auto parts = split(model, '/');
  const bool hub_id = parts.size() == 2 && !parts[0].empty() && !parts[1].empty() &&
                      model.find("..") == std::string::npos;
  if (!hub_id)
    throw Error(ErrorKind::not_found, "model '" + model + "' is not a directory and not a hub id (ORG/NAME)");

  const fs::path repo = hf_hub_cache() / ("models--" + parts[0] + "--" + parts[1]);
  std::string revision = "main";
  if (std::ifstream ref(repo / "refs" / "main"); ref) std::getline(ref, revision);
  const fs::path snapshot = repo / "snapshots" / trim(revision);
  if (fs::is_directory(snapshot)) return snapshot;
  if (fs::is_directory(repo / "snapshots"))
    for (const auto& e : fs::directory_iterator(repo / "snapshots"))
      if (e.is_directory()) return e.path();
  throw Error(ErrorKind::not_found, "model '" + model + "' is neither a local directory nor in the Hugging Face cache (" +
                                        repo.string() + "); downloading from the hub is not built yet");
}

}  // namespace qjobs::model
