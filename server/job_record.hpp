// A job as the server stores it: one row of the `jobs` table.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/job_state.hpp"

namespace qjobs::server {

struct JobRecord {
  int64_t seq = 0;   // insertion order; the pagination cursor
  std::string id;    // server-assigned, e.g. 20261123-184501-3fa2c1
  std::string name;  // the spec's JOB_ID, informational
  std::string algorithm;
  std::string model;
  JobState state = JobState::queued;
  int priority = 0;  // higher first
  int attempts = 0;  // attempts started so far
  int max_attempts = 2;
  int devices_requested = 1;
  std::string devices;   // assigned: "0,1" (GPU ids) or "slot:2"
  std::string handle;    // the dispatcher's name for the current/last attempt (dispatcher.hpp); "" none
  double timeout_s = 0;  // 0 = none
  ErrorType error_type = ErrorType::none;
  std::string error;
  std::optional<std::string> idempotency_key;
  std::string spec_yaml;
  std::string spec_json;
  double created_at = 0;             // unix seconds
  std::optional<double> started_at;  // start of the current/last attempt
  std::optional<double> finished_at;
  double updated_at = 0;
  std::optional<double> cancel_requested_at;
  std::optional<double> not_before;  // QUEUED: do not start before (unix seconds)
  std::string stage;                 // last stage reported by the worker
  nlohmann::json metrics = nlohmann::json::object();
};

// The public JSON form (GET /jobs/{id}); spec texts are left out.
nlohmann::json to_json(const JobRecord& r);

}  // namespace qjobs::server
