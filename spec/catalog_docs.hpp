// The algorithm catalog as people read it: JSON for GET /algorithms and
// `jobctl algorithms --json`, Markdown for the README's spec reference
// (`jobctl algorithms --markdown`, checked by a test to match README.md),
// and a commented YAML template for `jobctl init`.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "spec/algorithm_catalog.hpp"

namespace qjobs {

nlohmann::json param_json(const ParamSpec& p);
nlohmann::json algorithm_json(const AlgorithmInfo& a);

// One section per available algorithm: its description, calibration
// defaults and a table of keys (type, default, range or choices, meaning).
std::string catalog_markdown();

// A job spec for `algorithm` on `model` that submits as it is: every key of
// the algorithm section at its default, commented, with calibration and an
// eval task where the algorithm wants them.
std::string spec_template(const AlgorithmInfo& algorithm, const std::string& model);

}  // namespace qjobs
