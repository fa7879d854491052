// The algorithm catalog as people read it: JSON for GET /algorithms and
// `jobctl algorithms --json`, Markdown for the README's spec reference
// (`jobctl algorithms --markdown`, checked by a test to match README.md),
// and a commented YAML template for `jobctl init`.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "spec/algorithm_catalog.hpp"
#include "spec/eval_task.hpp"

namespace qjobs {

nlohmann::json param_json(const ParamSpec& p);
nlohmann::json algorithm_json(const AlgorithmInfo& a);

// One section per available algorithm: its description, calibration
// defaults and a table of keys (type, default, range or choices, meaning).
std::string catalog_markdown();

// The evaluation tasks: JSON for GET /eval-tasks and `jobctl tasks --json`,
// Markdown for the README (`jobctl tasks --markdown`, checked by a test):
// one section per task with what it reads, reports and each key.
nlohmann::json eval_task_json(const EvalTaskInfo& task);
std::string eval_tasks_markdown();

// A job spec for `algorithm` on `model` that submits as it is: every key of
// the algorithm section at its default, commented, with calibration and an
// eval task where the algorithm wants them.
std::string spec_template(const AlgorithmInfo& algorithm, const std::string& model);

}  // namespace qjobs
