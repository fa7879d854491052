// common/model_config_check.hpp, answered by the worker's own reader.
#include "jobs/model/model_config_check.hpp"

#include "common/error.hpp"
#include "jobs/model/model_config.hpp"

namespace qjobs {

std::optional<std::string> model_config_problem(const nlohmann::json& config, const std::string& export_format) {
  try {
    return model::export_layout_problem(model::ModelConfig::from_json(config), export_format);
  } catch (const Error& e) {
    return std::string(e.what());
  }
}

}  // namespace qjobs
