#include "jobs/model/random_model.hpp"

#include <cstdio>

#include <ATen/CPUGeneratorImpl.h>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/job_dir.hpp"
#include "jobs/model/safetensors.hpp"

namespace qjobs::model {
namespace fs = std::filesystem;

void write_random_llama(const fs::path& dir, const RandomModelOptions& o) {
  fs::create_directories(dir);
  const at::ScalarType dt = o.dtype == "bfloat16" ? at::kBFloat16 : o.dtype == "float16" ? at::kHalf : at::kFloat;
  auto gen = at::detail::createCPUGenerator(o.seed);
  const auto randn = [&](std::vector<int64_t> shape) { return at::normal(0.0, o.init_std, shape, gen).to(dt); };
  const int64_t head_dim = o.hidden / o.heads;

  std::vector<NamedTensor> tensors;
  tensors.push_back({"model.embed_tokens.weight", randn({o.vocab, o.hidden}), {}});
  for (int64_t l = 0; l < o.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    tensors.push_back({p + "input_layernorm.weight", at::ones({o.hidden}).to(dt), {}});
    tensors.push_back({p + "self_attn.q_proj.weight", randn({o.heads * head_dim, o.hidden}), {}});
    tensors.push_back({p + "self_attn.k_proj.weight", randn({o.kv_heads * head_dim, o.hidden}), {}});
    tensors.push_back({p + "self_attn.v_proj.weight", randn({o.kv_heads * head_dim, o.hidden}), {}});
    tensors.push_back({p + "self_attn.o_proj.weight", randn({o.hidden, o.heads * head_dim}), {}});
    tensors.push_back({p + "post_attention_layernorm.weight", at::ones({o.hidden}).to(dt), {}});
    if (o.experts > 0) {
      tensors.push_back({p + "block_sparse_moe.gate.weight", randn({o.experts, o.hidden}), {}});
      for (int64_t e = 0; e < o.experts; ++e) {
        const std::string x = p + "block_sparse_moe.experts." + std::to_string(e) + ".";
        tensors.push_back({x + "w1.weight", randn({o.intermediate, o.hidden}), {}});
        tensors.push_back({x + "w3.weight", randn({o.intermediate, o.hidden}), {}});
        tensors.push_back({x + "w2.weight", randn({o.hidden, o.intermediate}), {}});
      }
      continue;
    }
    tensors.push_back({p + "mlp.gate_proj.weight", randn({o.intermediate, o.hidden}), {}});
    tensors.push_back({p + "mlp.up_proj.weight", randn({o.intermediate, o.hidden}), {}});
    tensors.push_back({p + "mlp.down_proj.weight", randn({o.hidden, o.intermediate}), {}});
  }
  tensors.push_back({"model.norm.weight", at::ones({o.hidden}).to(dt), {}});
  if (!o.tie_embeddings) tensors.push_back({"lm_head.weight", randn({o.vocab, o.hidden}), {}});

  nlohmann::json config = {
      {"architectures", {o.experts > 0 ? "MixtralForCausalLM" : "LlamaForCausalLM"}},
      {"model_type", o.experts > 0 ? "mixtral" : "llama"},
      {"hidden_size", o.hidden},
      {"intermediate_size", o.intermediate},
      {"num_hidden_layers", o.layers},
      {"num_attention_heads", o.heads},
      {"num_key_value_heads", o.kv_heads},
      {"head_dim", head_dim},
      {"vocab_size", o.vocab},
      {"max_position_embeddings", 2048},
      {"rms_norm_eps", 1e-5},
      {"rope_theta", 10000.0},
      {"hidden_act", "silu"},
      {"attention_bias", false},
      {"mlp_bias", false},
      {"tie_word_embeddings", o.tie_embeddings},
      {"torch_dtype", o.dtype},
      {"bos_token_id", 1},
      {"eos_token_id", 2},
  };
  if (o.experts > 0) {
    config["num_local_experts"] = o.experts;
    config["num_experts_per_tok"] = o.top_k;
  }
  write_file_atomic(dir / "config.json", config.dump(2));

  if (o.shards <= 1) {
    save_safetensors(dir / "model.safetensors", tensors);
    return;
  }
  nlohmann::json weight_map = nlohmann::json::object();
  const std::size_t per = (tensors.size() + o.shards - 1) / static_cast<std::size_t>(o.shards);
  uint64_t total_bytes = 0;
  for (int s = 0; s < o.shards; ++s) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, o.shards);
    std::vector<NamedTensor> part;
    for (std::size_t i = s * per; i < std::min(tensors.size(), (s + 1) * per); ++i) {
      part.push_back(tensors[i]);
      weight_map[tensors[i].name] = name;
      total_bytes += tensors[i].tensor.numel() * tensors[i].tensor.element_size();
    }
    save_safetensors(dir / name, part);
  }
  const nlohmann::json index = {{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}};
  write_file_atomic(dir / "model.safetensors.index.json", index.dump(2));
}

}  // namespace qjobs::model
