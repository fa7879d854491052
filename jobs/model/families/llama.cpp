// Llama (LlamaForCausalLM): the block every other table is written against.
#include "jobs/model/model_config.hpp"

namespace qjobs::model {

const Family& family_llama() {
  static const Family f{.arch = Arch::llama, .hf_class = "LlamaForCausalLM", .model_type = "llama", .names = {}};
  return f;
}

}  // namespace qjobs::model
