// The algorithms' typed parameters (jobs/quant/*_params.hpp): the catalog's
// defaults are the structs' fields, every declared key reaches a field and
// comes back, a mistyped value names its key; and the folders of jobs/ only
// include folders below them.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "spec/algorithm_catalog.hpp"
#include "common/error.hpp"
#include "jobs/quant/awq_params.hpp"
#include "jobs/quant/fp4_params.hpp"
#include "jobs/quant/fp8_params.hpp"
#include "jobs/quant/gptq_params.hpp"
#include "jobs/quant/hqq_params.hpp"
#include "jobs/quant/lmquant_params.hpp"
#include "jobs/quant/rtn_params.hpp"
#include "jobs/quant/seq_mse_params.hpp"
#include "jobs/quant/smoothquant_params.hpp"

namespace qjobs::quant {
namespace {

using nlohmann::json;

const ParamSpec& spec_of(const std::string& algorithm, const std::string& key) {
  const auto* a = find_algorithm(algorithm);
  if (a == nullptr) throw std::runtime_error(algorithm + " is not in the catalog");
  for (const auto& p : a->params)
    if (p.name == key) return p;
  throw std::runtime_error(algorithm + " has no key " + key);
}

TEST(AlgorithmParams, CatalogDefaultsAreTheStructFields) {
  // HQQ's group was 64 in the catalog and 128 where hqq.cpp read it.
  EXPECT_EQ(spec_of("HQQ", "Q_GROUP_SIZE").default_value, 64);
  EXPECT_EQ(hqq_params().parse(json::object()).group_size, 64);
  EXPECT_EQ(HqqParams{}.group_size, 64);
  EXPECT_EQ(spec_of("AutoAWQ", "N_GRID").default_value, AwqParams{}.n_grid);
  EXPECT_EQ(spec_of("GPTQ", "DAMP_PERCENT").default_value, 0.01);
  EXPECT_EQ(spec_of("GPTQ", "Q_GROUP_SIZE").default_value, 128);
  EXPECT_EQ(spec_of("SmoothQuant", "alpha").default_value, 0.5);
  EXPECT_EQ(spec_of("LMQuant", "quant_type").default_value, "gchn");
  EXPECT_EQ(spec_of("NVFP4", "ACT").default_value, "none");
  // No default: the key stays absent (an optional, an empty list).
  EXPECT_TRUE(spec_of("SequentialMSE", "NUM_BATCHES").default_value.is_null());
  EXPECT_TRUE(spec_of("HQQ", "ZERO_POINTS").default_value.is_null());
  EXPECT_TRUE(spec_of("RTN", "LAYER_OVERRIDES").default_value.is_null());
}

// A value of `p` other than its default that the schema accepts.
json other_value(const ParamSpec& p) {
  switch (p.type) {
    case ParamType::boolean:
      return !p.default_value.get<bool>();
    case ParamType::integer: {
      const auto d = p.default_value.is_null() ? static_cast<int64_t>(p.min) : p.default_value.get<int64_t>();
      return d + 1 <= p.max ? d + 1 : d - 1;
    }
    case ParamType::number: {
      const double d = p.default_value.is_null() ? p.min : p.default_value.get<double>();
      return d + 0.125 <= p.max ? d + 0.125 : d - 0.125;
    }
    case ParamType::string:
      for (const auto& c : p.choices)
        if (c != p.default_value) return c;
      return "x";
    case ParamType::string_list:
      return json::array({"a"});
    case ParamType::section:
      return json{{"k", 1}};
    case ParamType::section_list:
      return json::array({json{{"pattern", "*.down_proj"}, {"SKIP", true}}});
  }
  return nullptr;
}

template <class T>
void expect_every_key_reaches_a_field(const std::string& algorithm, const ParamTable<T>& table) {
  const auto* info = find_algorithm(algorithm);
  ASSERT_NE(info, nullptr);
  ASSERT_EQ(info->params.size(), table.specs().size()) << algorithm;
  json section = json::object();
  for (const auto& p : info->params) section[p.name] = other_value(p);
  const json back = table.to_json(table.parse(section));
  for (const auto& p : info->params)
    EXPECT_EQ(back.value(p.name, json()), section[p.name]) << algorithm << "." << p.name;
  // And the defaults: an empty section is T{}.
  EXPECT_EQ(table.to_json(table.parse(json::object())), table.to_json(T{})) << algorithm;
}

TEST(AlgorithmParams, EveryDeclaredKeyReachesAFieldAndComesBack) {
  expect_every_key_reaches_a_field("RTN", rtn_params());
  expect_every_key_reaches_a_field("AutoAWQ", awq_params());
  expect_every_key_reaches_a_field("GPTQ", gptq_params());
  expect_every_key_reaches_a_field("SequentialMSE", seq_mse_params());
  expect_every_key_reaches_a_field("HQQ", hqq_params());
  expect_every_key_reaches_a_field("SmoothQuant", smoothquant_params());
  expect_every_key_reaches_a_field("LMQuant", lmquant_params());
  expect_every_key_reaches_a_field("FP8", fp8_params());
  expect_every_key_reaches_a_field("NVFP4", fp4_params("16"));
  expect_every_key_reaches_a_field("MXFP4", fp4_params("32"));
}

TEST(AlgorithmParams, MistypedValueNamesItsKey) {
  try {
    awq_params().parse(json{{"N_GRID", "twenty"}});
    FAIL() << "a string N_GRID was read";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::invalid_input);
    EXPECT_NE(std::string(e.what()).find("N_GRID"), std::string::npos) << e.what();
  }
  // Keys the table does not declare are the schema's business, not the parser's.
  EXPECT_EQ(rtn_params().parse(json{{"NOT_A_KEY", 1}, {"W_BIT", 8}}).w_bit, 8);
}

// The folders of jobs/ in layers: a file may include its own folder and the
// layers below, never a folder beside or above it.
TEST(JobsLayering, NoFolderIncludesOneAboveIt) {
  const std::map<std::string, int> layer = {{"numeric", 0}, {"tokenizer", 0}, {"data", 1},  {"model", 2},
                                            {"eval", 3},    {"quant", 3},     {"export", 3}};
  const std::filesystem::path root = std::filesystem::path(QJOBS_SOURCE_DIR) / "jobs";
  const std::regex inc(R"(#include\s+"jobs/([a-z_]+)/)");
  std::set<std::string> seen;
  for (const auto& e : std::filesystem::recursive_directory_iterator(root)) {
    const auto ext = e.path().extension();
    if (!e.is_regular_file() || (ext != ".cpp" && ext != ".hpp")) continue;
    const std::string folder = std::filesystem::relative(e.path(), root).begin()->string();
    ASSERT_TRUE(layer.count(folder)) << "jobs/" << folder << " has no layer in this test";
    seen.insert(folder);
    std::ifstream f(e.path());
    std::stringstream ss;
    ss << f.rdbuf();
    const std::string text = ss.str();
    for (std::sregex_iterator it(text.begin(), text.end(), inc), end; it != end; ++it) {
      const std::string to = (*it)[1];
      ASSERT_TRUE(layer.count(to)) << e.path() << " includes jobs/" << to;
      EXPECT_TRUE(to == folder || layer.at(to) < layer.at(folder))
          << e.path() << " (jobs/" << folder << ") includes jobs/" << to;
    }
  }
  EXPECT_EQ(seen.size(), layer.size());
}

// The parameter declarations build without libtorch (the server links them).
TEST(JobsLayering, ParameterDeclarationsIncludeNoTorch) {
  const std::filesystem::path quant = std::filesystem::path(QJOBS_SOURCE_DIR) / "jobs" / "quant";
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(quant)) {
    const std::string name = e.path().filename().string();
    const bool declaration = name.find("_params.") != std::string::npos || name == "catalog.cpp" ||
                             name == "algorithm_list.hpp" || name == "weight_scheme.hpp";
    if (!declaration) continue;
    ++files;
    std::ifstream f(e.path());
    std::string line;
    while (std::getline(f, line)) {
      if (line.rfind("#include", 0) != 0) continue;
      EXPECT_EQ(line.find("ATen"), std::string::npos) << name << ": " << line;
      EXPECT_EQ(line.find("torch"), std::string::npos) << name << ": " << line;
      const auto q = line.find("\"jobs/");
      if (q != std::string::npos) {
        const std::string target = line.substr(q + 1, line.rfind('"') - q - 1);
        EXPECT_TRUE(target.find("_params.hpp") != std::string::npos || target == "jobs/quant/algorithm_list.hpp" ||
                    target == "jobs/quant/weight_scheme.hpp")
            << name << " includes " << target;
      }
    }
  }
  EXPECT_GE(files, 20);
}

}  // namespace
}  // namespace qjobs::quant
