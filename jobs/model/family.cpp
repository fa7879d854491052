#include "jobs/model/family.hpp"

#include "common/error.hpp"

namespace qjobs::model {

bool Family::llama_layout() const {
  const BlockNames plain;
  return names.qkv.empty() && names.gate_up.empty() && !moe() && names.attn_out_norm.empty() &&
         names.mlp_out_norm.empty() && names.q_norm.empty() && names.mlp_norm == plain.mlp_norm;
}

const std::vector<const Family*>& families() {
#define QJOBS_FAMILY_ROW(name) &family_##name(),
  static const std::vector<const Family*> all = {QJOBS_FAMILIES(QJOBS_FAMILY_ROW)};
#undef QJOBS_FAMILY_ROW
  return all;
}

const Family& family_of(const nlohmann::json& j) {
  std::string cls;
  if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
      j["architectures"][0].is_string())
    cls = j["architectures"][0].get<std::string>();
  const std::string type =
      j.contains("model_type") && j["model_type"].is_string() ? j["model_type"].get<std::string>() : "";
  for (const auto* f : families())
    if (f->hf_class == cls || (cls.empty() && f->model_type == type)) return *f;
  std::string known;
  for (const auto* f : families()) known += (known.empty() ? "" : ", ") + f->hf_class;
  throw Error(ErrorKind::invalid_input,
              "config.json: architecture '" + (cls.empty() ? type : cls) + "' is not supported (known: " + known + ")");
}

}  // namespace qjobs::model
