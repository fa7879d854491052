// The process environment, read once (common/environment.hpp): each
// variable to its field, the hub caches in the order they are searched, and
// bad values left at their defaults.
#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/environment.hpp"

namespace qjobs {
namespace {

// Sets variables for one test and restores the old values after it.
class ScopedEnv {
 public:
  void set(const char* name, const char* value) {
    const char* old = std::getenv(name);
    saved_.push_back({name, old != nullptr ? std::optional<std::string>(old) : std::nullopt});
    if (value != nullptr) ::setenv(name, value, 1);
    else ::unsetenv(name);
  }
  ~ScopedEnv() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
      if (it->second) ::setenv(it->first.c_str(), it->second->c_str(), 1);
      else ::unsetenv(it->first.c_str());
    }
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

TEST(Environment, EachVariableReachesItsField) {
  ScopedEnv env;
  env.set("QJOBS_DATA_DIR", "/srv/data");
  env.set("QJOBS_CACHE_DIR", "/srv/cache");
  env.set("HF_HUB_CACHE", "/home/u/hf");
  env.set("HF_ENDPOINT", "http://127.0.0.1:9/");
  env.set("HF_TOKEN", "t0k");
  env.set("HF_HUB_OFFLINE", "1");
  env.set("CUDA_VISIBLE_DEVICES", "2,3");
  env.set("QJOBS_ATTEMPT", "3");
  env.set("QJOBS_HEARTBEAT_S", "0.5");
  env.set("QJOBS_TEST_STEP_DELAY_MS", "40");
  env.set("QJOBS_TEST_CORRUPT_PACKED", "model.layers.0.mlp.down_proj.weight_packed");
  const auto e = Environment::from_process();
  EXPECT_EQ(e.data_dir, "/srv/data");
  EXPECT_EQ(e.cache_dir, "/srv/cache");
  ASSERT_EQ(e.hub_caches.size(), 2u);
  EXPECT_EQ(e.hub_caches[0], "/srv/cache/hub");  // the server's cache first: downloads go there
  EXPECT_EQ(e.hub_caches[1], "/home/u/hf");
  EXPECT_EQ(e.hf_endpoint, "http://127.0.0.1:9/");
  EXPECT_EQ(e.hf_token, "t0k");
  EXPECT_TRUE(e.hf_offline);
  ASSERT_TRUE(e.cuda_visible_devices);
  EXPECT_EQ(*e.cuda_visible_devices, "2,3");
  EXPECT_EQ(e.attempt, 3);
  EXPECT_DOUBLE_EQ(e.heartbeat_s, 0.5);
  EXPECT_EQ(e.test.step_delay_ms, 40);
  EXPECT_EQ(e.test.corrupt_packed, "model.layers.0.mlp.down_proj.weight_packed");
}

TEST(Environment, UnsetOrBadValuesKeepTheDefaults) {
  ScopedEnv env;
  for (const char* v :
       {"QJOBS_DATA_DIR", "QJOBS_CACHE_DIR", "HF_HUB_CACHE", "HF_ENDPOINT", "HF_TOKEN", "CUDA_VISIBLE_DEVICES",
        "QJOBS_TEST_STEP_DELAY_MS", "QJOBS_TEST_CORRUPT_PACKED", "QJOBS_TEST_STORE_FAULTS"})
    env.set(v, nullptr);
  env.set("HF_HOME", "/opt/hf");
  env.set("HF_HUB_OFFLINE", "0");
  env.set("QJOBS_ATTEMPT", "-4");
  env.set("QJOBS_HEARTBEAT_S", "soon");
  const auto e = Environment::from_process();
  EXPECT_EQ(e.data_dir, "datasets");
  EXPECT_TRUE(e.cache_dir.empty());
  ASSERT_EQ(e.hub_caches.size(), 1u);
  EXPECT_EQ(e.hub_caches[0], "/opt/hf/hub");
  EXPECT_EQ(e.hf_endpoint, "https://huggingface.co");
  EXPECT_FALSE(e.hf_offline);
  EXPECT_FALSE(e.cuda_visible_devices);
  EXPECT_EQ(e.attempt, 1);
  EXPECT_DOUBLE_EQ(e.heartbeat_s, 30);
  EXPECT_EQ(e.test.step_delay_ms, 0);
  EXPECT_TRUE(e.test.corrupt_packed.empty());
  // A default Environment reads nothing: what a library sees when no main handed it one.
  const Environment none;
  EXPECT_TRUE(none.hub_caches.empty());
  EXPECT_EQ(none.data_dir, "datasets");
}

}  // namespace
}  // namespace qjobs
