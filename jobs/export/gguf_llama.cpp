#include "jobs/export/gguf_llama.hpp"

#include <ATen/ops/argsort.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/index_select.h>
#include <ATen/ops/tensor.h>

#include <fstream>

#include "common/error.hpp"
#include "jobs/model/model_config.hpp"

namespace qjobs::exporter {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

json read_json(const fs::path& p, bool required) {
  std::ifstream in(p);
  if (!in) {
    if (required) throw Error(ErrorKind::not_found, "missing " + p.string());
    return json::object();
  }
  json j = json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object()) throw Error(ErrorKind::data_corruption, p.string() + " is not a JSON object");
  return j;
}

int64_t cfg_int(const json& c, const char* key) {
  if (!c.contains(key) || !c[key].is_number_integer())
    throw Error(ErrorKind::invalid_input, std::string("config.json has no integer ") + key);
  return c[key].get<int64_t>();
}

// llama.cpp's pre-tokenizer name for tokenizer.json's pre_tokenizer.
std::string pre_tokenizer_name(const json& tj) {
  const json& pre = tj.value("pre_tokenizer", json());
  if (pre.is_object() && pre.value("type", "") == "ByteLevel" && pre.value("use_regex", true)) return "gpt-2";
  if (pre.is_object() && pre.value("type", "") == "Sequence" && pre.contains("pretokenizers")) {
    for (const auto& p : pre["pretokenizers"])
      if (p.value("type", "") == "Split" && p.contains("pattern") && p["pattern"].contains("Regex") &&
          p["pattern"]["Regex"].get<std::string>().rfind("(?i:'s|'t|'re|'ve|'m|'ll|'d)", 0) == 0)
        return "llama-bpe";
  }
  throw Error(ErrorKind::invalid_input,
              "the GGUF export writes byte-level BPE tokenizers with the GPT-2 or Llama 3 pre-tokenizer; this "
              "tokenizer.json's pre_tokenizer is " +
                  pre.dump().substr(0, 200));
}

void write_tokenizer(gguf::Writer& w, const fs::path& dir) {
  const json tj = read_json(dir / "tokenizer.json", true);
  const json cfg = read_json(dir / "tokenizer_config.json", false);
  const json& model = tj.value("model", json::object());
  if (model.value("type", "") != "BPE" || model.value("byte_fallback", false))
    throw Error(ErrorKind::invalid_input,
                "the GGUF export writes byte-level BPE tokenizers (tokenizer.ggml.model gpt2); "
                "this one is " +
                    model.value("type", std::string("?")) +
                    (model.value("byte_fallback", false) ? " with byte_fallback (SentencePiece)" : ""));
  const std::string pre = pre_tokenizer_name(tj);
  const json& vocab = model.value("vocab", json::object());
  int64_t n = 0;
  for (auto& [tok, id] : vocab.items()) n = std::max<int64_t>(n, id.get<int64_t>() + 1);
  std::map<int64_t, std::pair<std::string, int32_t>> added;  // id -> content, token type
  for (const auto& a : tj.value("added_tokens", json::array())) {
    const int64_t id = a.value("id", int64_t{-1});
    if (id < 0 || id > (1 << 24))
      throw Error(ErrorKind::data_corruption, "tokenizer.json: added token id out of range");
    added[id] = {a.value("content", std::string()), a.value("special", false) ? 3 : 4};  // control, user-defined
    n = std::max(n, id + 1);
  }
  if (n <= 0 || n > (1 << 24))
    throw Error(ErrorKind::data_corruption, "tokenizer.json: vocabulary size " + std::to_string(n));
  std::vector<std::string> tokens(static_cast<std::size_t>(n));
  std::vector<int32_t> types(static_cast<std::size_t>(n), 1);  // normal
  std::vector<bool> seen(static_cast<std::size_t>(n), false);
  for (auto& [tok, id] : vocab.items()) {
    tokens[id.get<std::size_t>()] = tok;
    seen[id.get<std::size_t>()] = true;
  }
  for (const auto& [id, t] : added) {
    tokens[static_cast<std::size_t>(id)] = t.first;
    types[static_cast<std::size_t>(id)] = t.second;
    seen[static_cast<std::size_t>(id)] = true;
  }
  for (int64_t i = 0; i < n; ++i)
    if (!seen[static_cast<std::size_t>(i)]) {
      tokens[static_cast<std::size_t>(i)] = "[PAD" + std::to_string(i) + "]";
      types[static_cast<std::size_t>(i)] = 5;  // unused
    }
  std::vector<std::string> merges;
  for (const auto& m : model.value("merges", json::array())) {
    if (m.is_string()) merges.push_back(m.get<std::string>());
    else if (m.is_array() && m.size() == 2) merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
  }
  w.set_string("tokenizer.ggml.model", "gpt2");
  w.set_string("tokenizer.ggml.pre", pre);
  w.set_strings("tokenizer.ggml.tokens", tokens);
  w.set_i32s("tokenizer.ggml.token_type", types);
  w.set_strings("tokenizer.ggml.merges", merges);
  const auto id_of = [&](const char* key) -> std::optional<uint32_t> {
    if (!cfg.contains(key)) return std::nullopt;
    const json& v = cfg[key];
    const std::string s = v.is_string() ? v.get<std::string>() : v.is_object() ? v.value("content", std::string()) : "";
    if (s.empty()) return std::nullopt;
    if (vocab.contains(s)) return vocab[s].get<uint32_t>();
    for (const auto& [id, t] : added)
      if (t.first == s) return static_cast<uint32_t>(id);
    return std::nullopt;
  };
  if (const auto b = id_of("bos_token")) w.set_u32("tokenizer.ggml.bos_token_id", *b);
  if (const auto e = id_of("eos_token")) w.set_u32("tokenizer.ggml.eos_token_id", *e);
  if (const auto p = id_of("pad_token")) w.set_u32("tokenizer.ggml.padding_token_id", *p);
  w.set_bool("tokenizer.ggml.add_bos_token", cfg.value("add_bos_token", id_of("bos_token").has_value()));
  if (cfg.contains("chat_template") && cfg["chat_template"].is_string())
    w.set_string("tokenizer.chat_template", cfg["chat_template"].get<std::string>());
}

}  // namespace

std::vector<int64_t> rope_interleave_rows(int64_t heads, int64_t head_dim) {
  std::vector<int64_t> rows;
  rows.reserve(static_cast<std::size_t>(heads * head_dim));
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < head_dim / 2; ++i) {
      rows.push_back(h * head_dim + i);
      rows.push_back(h * head_dim + i + head_dim / 2);
    }
  return rows;
}

void write_llama_gguf(const json& config, const fs::path& tokenizer_dir, const WeightSource& weight,
                      gguf::TensorType linear_type, const std::string& model_name, const fs::path& path) {
  if (const auto problem = model::export_layout_problem(model::ModelConfig::from_json(config), "gguf"))
    throw Error(ErrorKind::invalid_input, *problem);
  const int64_t hidden = cfg_int(config, "hidden_size");
  const int64_t layers = cfg_int(config, "num_hidden_layers");
  const int64_t heads = cfg_int(config, "num_attention_heads");
  const int64_t kv_heads = config.value("num_key_value_heads", heads);
  const int64_t head_dim = config.contains("head_dim") && config["head_dim"].is_number_integer()
                               ? config["head_dim"].get<int64_t>()
                               : hidden / heads;
  const int64_t ffn = cfg_int(config, "intermediate_size");
  const int64_t vocab = cfg_int(config, "vocab_size");
  if (config.contains("rope_scaling") && !config["rope_scaling"].is_null())
    throw Error(ErrorKind::invalid_input, "the GGUF export does not write rope_scaling yet (config.json has " +
                                              config["rope_scaling"].dump().substr(0, 120) + ")");
  if (head_dim % 2 != 0) throw Error(ErrorKind::invalid_input, "head_dim must be even for RoPE");

  gguf::Writer w;
  w.set_string("general.architecture", "llama");
  w.set_string("general.name", model_name);
  // llama.cpp's file types: 0 all F32, 1 mostly F16, 2 mostly Q4_0, 7 mostly Q8_0.
  const uint32_t file_type = linear_type == gguf::TensorType::q4_0   ? 2
                             : linear_type == gguf::TensorType::q8_0 ? 7
                             : linear_type == gguf::TensorType::f16  ? 1
                                                                     : 0;
  w.set_u32("general.file_type", file_type);
  w.set_u32("general.quantization_version", 2);
  w.set_u32("llama.context_length", static_cast<uint32_t>(config.value("max_position_embeddings", int64_t{2048})));
  w.set_u32("llama.embedding_length", static_cast<uint32_t>(hidden));
  w.set_u32("llama.block_count", static_cast<uint32_t>(layers));
  w.set_u32("llama.feed_forward_length", static_cast<uint32_t>(ffn));
  w.set_u32("llama.attention.head_count", static_cast<uint32_t>(heads));
  w.set_u32("llama.attention.head_count_kv", static_cast<uint32_t>(kv_heads));
  w.set_u32("llama.attention.key_length", static_cast<uint32_t>(head_dim));
  w.set_u32("llama.attention.value_length", static_cast<uint32_t>(head_dim));
  w.set_u32("llama.rope.dimension_count", static_cast<uint32_t>(head_dim));
  w.set_f32("llama.rope.freq_base", config.value("rope_theta", 10000.0f));
  w.set_f32("llama.attention.layer_norm_rms_epsilon", config.value("rms_norm_eps", 1e-5f));
  w.set_u32("llama.vocab_size", static_cast<uint32_t>(vocab));
  write_tokenizer(w, tokenizer_dir);

  // Each tensor is read, reordered and encoded when the writer reaches it.
  const auto add = [&](const std::string& gguf_name, const std::string& hf_name, gguf::TensorType type,
                       int64_t permute_heads) {
    const at::Tensor probe = weight(hf_name);
    std::vector<int64_t> shape = probe.sizes().vec();
    w.add_tensor(gguf_name, shape, type, [=, &weight] {
      at::Tensor t = weight(hf_name).to(at::kFloat).contiguous();
      if (permute_heads > 0) {
        const auto order = rope_interleave_rows(permute_heads, head_dim);
        t = at::index_select(t, 0, at::tensor(order, at::kLong)).contiguous();
      }
      const int64_t cols = t.dim() == 1 ? t.size(0) : t.size(-1);
      const int64_t rows = t.numel() / cols;
      return gguf::encode(type, t.data_ptr<float>(), rows, cols);
    });
  };
  const auto F32 = gguf::TensorType::f32;
  add("token_embd.weight", "model.embed_tokens.weight", F32, 0);
  for (int64_t i = 0; i < layers; ++i) {
    const std::string hf = "model.layers." + std::to_string(i) + ".";
    const std::string blk = "blk." + std::to_string(i) + ".";
    add(blk + "attn_norm.weight", hf + "input_layernorm.weight", F32, 0);
    add(blk + "attn_q.weight", hf + "self_attn.q_proj.weight", linear_type, heads);
    add(blk + "attn_k.weight", hf + "self_attn.k_proj.weight", linear_type, kv_heads);
    add(blk + "attn_v.weight", hf + "self_attn.v_proj.weight", linear_type, 0);
    add(blk + "attn_output.weight", hf + "self_attn.o_proj.weight", linear_type, 0);
    add(blk + "ffn_norm.weight", hf + "post_attention_layernorm.weight", F32, 0);
    add(blk + "ffn_gate.weight", hf + "mlp.gate_proj.weight", linear_type, 0);
    add(blk + "ffn_up.weight", hf + "mlp.up_proj.weight", linear_type, 0);
    add(blk + "ffn_down.weight", hf + "mlp.down_proj.weight", linear_type, 0);
  }
  add("output_norm.weight", "model.norm.weight", F32, 0);
  if (!config.value("tie_word_embeddings", false)) add("output.weight", "lm_head.weight", F32, 0);
  w.write(path);
}

std::vector<std::pair<std::string, at::Tensor>> read_llama_gguf(const fs::path& path) {
  const auto h = gguf::read_header(path);
  const auto meta_int = [&](const char* key) -> int64_t {
    if (!h.metadata.contains(key) || !h.metadata[key].is_number_integer())
      throw Error(ErrorKind::data_corruption, path.string() + ": no integer " + key);
    return h.metadata[key].get<int64_t>();
  };
  if (h.metadata.value("general.architecture", std::string()) != "llama")
    throw Error(ErrorKind::data_corruption, path.string() + ": general.architecture is not llama");
  const int64_t heads = meta_int("llama.attention.head_count");
  const int64_t kv_heads = meta_int("llama.attention.head_count_kv");
  const int64_t head_dim = meta_int("llama.rope.dimension_count");
  static const std::map<std::string, std::string> names = {
      {"attn_norm", "input_layernorm"}, {"attn_q", "self_attn.q_proj"},      {"attn_k", "self_attn.k_proj"},
      {"attn_v", "self_attn.v_proj"},   {"attn_output", "self_attn.o_proj"}, {"ffn_norm", "post_attention_layernorm"},
      {"ffn_gate", "mlp.gate_proj"},    {"ffn_up", "mlp.up_proj"},           {"ffn_down", "mlp.down_proj"}};
  std::ifstream in(path, std::ios::binary);
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& t : h.tensors) {
    std::string hf;
    int64_t permuted_heads = 0;
    if (t.name == "token_embd.weight") hf = "model.embed_tokens.weight";
    else if (t.name == "output_norm.weight") hf = "model.norm.weight";
    else if (t.name == "output.weight") hf = "lm_head.weight";
    else if (t.name.rfind("blk.", 0) == 0) {
      const auto dot = t.name.find('.', 4);
      const auto end = t.name.rfind(".weight");
      if (dot == std::string::npos || end == std::string::npos || end <= dot)
        throw Error(ErrorKind::data_corruption, path.string() + ": unexpected tensor " + t.name);
      const auto role = names.find(t.name.substr(dot + 1, end - dot - 1));
      if (role == names.end()) throw Error(ErrorKind::data_corruption, path.string() + ": unexpected tensor " + t.name);
      hf = "model.layers." + t.name.substr(4, dot - 4) + "." + role->second + ".weight";
      if (role->first == "attn_q") permuted_heads = heads;
      if (role->first == "attn_k") permuted_heads = kv_heads;
    } else {
      throw Error(ErrorKind::data_corruption, path.string() + ": unexpected tensor " + t.name);
    }
    std::vector<uint8_t> bytes(t.bytes);
    in.seekg(static_cast<std::streamoff>(t.offset));
    in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (!in) throw Error(ErrorKind::io, "cannot read " + path.string());
    const int64_t cols = t.shape.back();
    const int64_t rows = static_cast<int64_t>(t.bytes / gguf::row_bytes(t.type, cols));
    auto values = gguf::decode(t.type, bytes.data(), bytes.size(), rows, cols);
    at::Tensor w = at::from_blob(values.data(), t.shape, at::kFloat).clone();
    if (permuted_heads > 0) {
      if (rows != permuted_heads * head_dim)
        throw Error(ErrorKind::data_corruption,
                    path.string() + ": " + t.name + " has " + std::to_string(rows) + " rows, not heads x head_dim");
      // GGUF row r holds HF row order[r]: HF row order[r] <- GGUF row r.
      const auto order = at::tensor(rope_interleave_rows(permuted_heads, head_dim), at::kLong);
      w = at::index_select(w, 0, at::argsort(order)).contiguous();
    }
    out.emplace_back(hf, w);
  }
  return out;
}

}  // namespace qjobs::exporter
