// The schema of one key of a spec section, and builders for it. The server
// validates a job's sections against these (spec/job_spec), `jobctl
// algorithms` and the README print them (spec/catalog_docs), and each
// algorithm binds them to the fields of its typed parameter struct
// (common/param_table.hpp).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace qjobs {

enum class ParamType { boolean, integer, number, string, string_list, section, section_list };

std::string_view param_type_name(ParamType t);

// One key of a section. Sections nest; Nyuntam's dotted keys
// (`quant.smooth.xw.alpha`) address the nested ones.
struct ParamSpec {
  std::string name;
  ParamType type = ParamType::string;
  std::string description;
  nlohmann::json default_value;  // null: no default, the key stays absent
  double min = -1e300;           // integer/number: inclusive bounds
  double max = 1e300;
  std::vector<std::string> choices;  // string: allowed values when non-empty
  std::vector<ParamSpec> children;   // section, section_list: the keys of the (each) mapping
  // Extra rule on a value that already has the right type; returns the
  // message when the value is rejected.
  std::function<std::optional<std::string>(const nlohmann::json&)> check;
};

// Builders. `def` is the default written into the section when the key is
// absent (null: none). Inside a ParamTable the default comes from the
// struct's field instead, and `def` is left null.
namespace param {

ParamSpec integer(std::string name, std::string desc, nlohmann::json def, double lo, double hi);
ParamSpec number(std::string name, std::string desc, nlohmann::json def, double lo = -1e300, double hi = 1e300);
ParamSpec boolean(std::string name, std::string desc, nlohmann::json def);
ParamSpec string(std::string name, std::string desc, nlohmann::json def, std::vector<std::string> choices = {});
ParamSpec string_list(std::string name, std::string desc);
ParamSpec section(std::string name, std::string desc, std::vector<ParamSpec> children);
ParamSpec section_list(std::string name, std::string desc, std::vector<ParamSpec> children);

// Q_GROUP_SIZE's rule: -1 (one group per output channel) or >= 1.
std::optional<std::string> group_size_rule(const nlohmann::json& v);

}  // namespace param
}  // namespace qjobs
