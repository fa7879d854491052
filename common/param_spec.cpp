#include "common/param_spec.hpp"

namespace qjobs {

std::string_view param_type_name(ParamType t) {
  switch (t) {
    case ParamType::boolean:
      return "a boolean";
    case ParamType::integer:
      return "an integer";
    case ParamType::number:
      return "a number";
    case ParamType::string:
      return "a string";
    case ParamType::string_list:
      return "a list of strings";
    case ParamType::section:
      return "a mapping";
    case ParamType::section_list:
      return "a list of mappings";
  }
  return "a value";
}

namespace param {

using nlohmann::json;

namespace {

ParamSpec ranged(ParamType type, std::string name, std::string desc, json def, double lo, double hi) {
  ParamSpec p{.name = std::move(name), .type = type, .description = std::move(desc), .default_value = std::move(def)};
  p.min = lo;
  p.max = hi;
  return p;
}

}  // namespace

ParamSpec integer(std::string name, std::string desc, json def, double lo, double hi) {
  return ranged(ParamType::integer, std::move(name), std::move(desc), std::move(def), lo, hi);
}

ParamSpec number(std::string name, std::string desc, json def, double lo, double hi) {
  return ranged(ParamType::number, std::move(name), std::move(desc), std::move(def), lo, hi);
}

ParamSpec boolean(std::string name, std::string desc, json def) {
  return ParamSpec{.name = std::move(name),
                   .type = ParamType::boolean,
                   .description = std::move(desc),
                   .default_value = std::move(def)};
}

ParamSpec string(std::string name, std::string desc, json def, std::vector<std::string> choices) {
  return ParamSpec{.name = std::move(name),
                   .type = ParamType::string,
                   .description = std::move(desc),
                   .default_value = std::move(def),
                   .choices = std::move(choices)};
}

ParamSpec string_list(std::string name, std::string desc) {
  return ParamSpec{.name = std::move(name), .type = ParamType::string_list, .description = std::move(desc)};
}

ParamSpec section(std::string name, std::string desc, std::vector<ParamSpec> children) {
  return ParamSpec{.name = std::move(name),
                   .type = ParamType::section,
                   .description = std::move(desc),
                   .children = std::move(children)};
}

ParamSpec section_list(std::string name, std::string desc, std::vector<ParamSpec> children) {
  return ParamSpec{.name = std::move(name),
                   .type = ParamType::section_list,
                   .description = std::move(desc),
                   .children = std::move(children)};
}

std::optional<std::string> group_size_rule(const json& v) {
  const auto g = v.get<long long>();
  if (g == -1 || g >= 1) return std::nullopt;
  return "must be -1 (one group per output channel) or a positive group size";
}

}  // namespace param
}  // namespace qjobs
