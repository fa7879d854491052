// The process environment a qjobs program depends on, read once in its main
// (Environment::from_process) and passed down as a value: nothing below a
// main calls getenv. A default-constructed Environment is what a program
// with an empty environment sees (the data root ./datasets, no caches).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace qjobs {

// Hooks the integration tests set to reach states a real run reaches only
// by chance; a production environment leaves them unset. They are read with
// the rest of the environment, in main, and nowhere else.
struct TestHooks {
  int64_t step_delay_ms = 0;   // QJOBS_TEST_STEP_DELAY_MS: sleep after every progress step
  std::string corrupt_packed;  // QJOBS_TEST_CORRUPT_PACKED: a tensor of the written model to damage before verify
  std::string store_faults;    // QJOBS_TEST_STORE_FAULTS: the server's store fault plan (server/store_faults.hpp)
};

struct Environment {
  std::filesystem::path data_dir = "datasets";  // QJOBS_DATA_DIR: where DATASET_NAME is read from
  std::filesystem::path cache_dir;              // QJOBS_CACHE_DIR: the server's cache (hub/, baselines/); empty: none
  // The Hugging Face caches searched for a hub id, in order:
  // $QJOBS_CACHE_DIR/hub, then $HF_HUB_CACHE, else $HF_HOME/hub, else
  // ~/.cache/huggingface/hub. The first one is where downloads go.
  std::vector<std::filesystem::path> hub_caches;
  std::string hf_endpoint = "https://huggingface.co";  // HF_ENDPOINT
  std::string hf_token;                                // HF_TOKEN
  bool hf_offline = false;                             // HF_HUB_OFFLINE set to anything but "0"
  std::optional<std::string> cuda_visible_devices;     // CUDA_VISIBLE_DEVICES, as given
  int attempt = 1;                                     // QJOBS_ATTEMPT: the worker's attempt number, >= 1
  double heartbeat_s = 30;                             // QJOBS_HEARTBEAT_S: status.json rewrite period, > 0
  std::string reference_python;                        // QJOBS_REFERENCE_PYTHON: the verify stage's Python
  std::string verify_script;                           // QJOBS_VERIFY_SCRIPT: ct_verify.py
  TestHooks test;

  static Environment from_process();
};

}  // namespace qjobs
