#include "jobs/model/model_source.hpp"

#include <cstdlib>
#include <fstream>
#include <optional>
#include <vector>

#include "common/error.hpp"
#include "common/model_locator.hpp"
#include "common/strings.hpp"
#include "jobs/model/hub_download.hpp"

namespace qjobs::model {
namespace fs = std::filesystem;

fs::path resolve_model_dir(const std::string& model, const Environment& env,
                           const std::function<void(uint64_t, uint64_t)>& progress) {
  if (const auto found = find_local_model_dir(model, env.hub_caches))
    return *found;  // a directory or a cached snapshot

  const auto parts = split(model, '/');
  const bool hub_id =
      parts.size() == 2 && !parts[0].empty() && !parts[1].empty() && model.find("..") == std::string::npos;
  if (!hub_id)
    throw Error(ErrorKind::not_found, "model '" + model + "' is not a directory and not a hub id (ORG/NAME)");

  const std::string folder = "models--" + parts[0] + "--" + parts[1];
  const auto o = hub_options(env);
  if (env.hf_offline)
    throw Error(ErrorKind::not_found,
                "model '" + model + "' is not a local directory and not in the Hugging Face cache (" +
                    (o.cache / folder).string() + "), and HF_HUB_OFFLINE is set, so it is not downloaded");
  return download_model(model, o, progress);
}

}  // namespace qjobs::model
