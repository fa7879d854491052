// A typed parameter struct bound to the schema of its spec section, so that
// each key is declared once: its name, meaning, bounds and choices in the
// ParamSpec, its C++ type and its default in the struct's field.
//
//   struct AwqParams : WeightOnlyParams {
//     int64_t n_grid = 20;  // grid points of the scale search, 2..1000
//   };
//   const ParamTable<AwqParams>& awq_table() {
//     static const auto t = ParamTable<AwqParams>().add(&AwqParams::n_grid,
//         param::integer("N_GRID", "grid points of the scale search", nullptr, 2, 1000));
//     return t;
//   }
//   awq_table().specs()   -> the catalog's schema, defaults read from AwqParams{}
//   awq_table().parse(j)  -> AwqParams, absent keys keeping their defaults
//
// Field types: bool, int64_t, int, double, std::string, std::optional of
// those (default: absent), and nlohmann::json for sections and lists kept as
// they were written (default: absent when null or empty).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/param_spec.hpp"

namespace qjobs {

template <class T>
class ParamTable {
 public:
  // Binds `spec` to field `m` of T (or of a base of T). The spec's default
  // is replaced by the field's value in T{}.
  template <class V, class B>
  ParamTable&& add(V B::*m, ParamSpec spec) && {
    static_assert(std::is_base_of_v<B, T>, "the field must belong to T or a base of T");
    V T::*field = m;
    const T defaults{};
    spec.default_value = default_json(defaults.*field);
    const std::string key = spec.name;
    rows_.push_back({std::move(spec),
                     [field, key](T& t, const nlohmann::json& v) {
                       try {
                         read(t.*field, v);
                       } catch (const nlohmann::json::exception& e) {
                         throw Error(ErrorKind::invalid_input, key + ": " + e.what());
                       }
                     },
                     [field](const T& t) { return default_json(t.*field); }});
    return std::move(*this);
  }

  // The schema, in declaration order.
  std::vector<ParamSpec> specs() const {
    std::vector<ParamSpec> out;
    out.reserve(rows_.size());
    for (const auto& r : rows_) out.push_back(r.spec);
    return out;
  }

  // `section` (an algorithm section, usually validated against specs()) as
  // T: absent and null keys keep T{}'s values, keys the table does not
  // declare are ignored. Throws Error(invalid_input) naming a key whose
  // value has the wrong type.
  // What `t` holds, as a section: every declared key with a value (absent
  // optionals and empty sections left out). parse(to_json(t)) == t.
  nlohmann::json to_json(const T& t) const {
    nlohmann::json out = nlohmann::json::object();
    for (const auto& r : rows_)
      if (auto v = r.write(t); !v.is_null()) out[r.spec.name] = std::move(v);
    return out;
  }

  T parse(const nlohmann::json& section) const {
    T t{};
    if (!section.is_object()) return t;
    for (const auto& r : rows_)
      if (const auto it = section.find(r.spec.name); it != section.end() && !it->is_null()) r.read(t, *it);
    return t;
  }

 private:
  struct Row {
    ParamSpec spec;
    std::function<void(T&, const nlohmann::json&)> read;
    std::function<nlohmann::json(const T&)> write;
  };

  template <class V>
  static nlohmann::json default_json(const V& v) {
    if constexpr (std::is_same_v<V, nlohmann::json>) {
      return v.is_null() || (v.is_structured() && v.empty()) ? nlohmann::json() : v;
    } else if constexpr (is_optional<V>::value) {
      return v ? nlohmann::json(*v) : nlohmann::json();
    } else {
      return nlohmann::json(v);
    }
  }

  template <class V>
  static void read(V& dst, const nlohmann::json& v) {
    if constexpr (std::is_same_v<V, nlohmann::json>) {
      dst = v;
    } else if constexpr (is_optional<V>::value) {
      dst = v.get<typename V::value_type>();
    } else if constexpr (std::is_integral_v<V> && !std::is_same_v<V, bool>) {
      // An integer key may arrive as 4.0 from JSON; the schema has already
      // checked it is integral.
      dst = v.is_number_float() ? static_cast<V>(v.get<double>()) : v.get<V>();
    } else {
      dst = v.get<V>();
    }
  }

  template <class V>
  struct is_optional : std::false_type {};
  template <class V>
  struct is_optional<std::optional<V>> : std::true_type {};

  std::vector<Row> rows_;
};

}  // namespace qjobs
