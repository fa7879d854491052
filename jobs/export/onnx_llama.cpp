#include "jobs/export/onnx_llama.hpp"

#include <ATen/ATen.h>
#include <onnx/onnx_pb.h>

#include <cmath>
#include <fstream>
#include <set>

#include "common/error.hpp"
#include "jobs/model/act_quant.hpp"
#include "jobs/model/llama_model.hpp"
#include "jobs/model/model_config.hpp"

namespace qjobs::exporter::onnx {

namespace fs = std::filesystem;
using nlohmann::json;
namespace pb = ::onnx;

std::string GraphShape::name() const { return "ar" + std::to_string(seq_len) + "_cl" + std::to_string(context_len); }

namespace {

const char* kLinears[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                          "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

// The input tensor (by its graph name) each Linear of layer l reads.
std::string input_tensor(int64_t l, const std::string& linear) {
  const std::string p = "model.layers." + std::to_string(l) + ".";
  if (linear == "self_attn.q_proj" || linear == "self_attn.k_proj" || linear == "self_attn.v_proj")
    return p + "input_layernorm.output";
  if (linear == "mlp.gate_proj" || linear == "mlp.up_proj") return p + "post_attention_layernorm.output";
  return p + linear + ".input";
}

// Builds a graph node by node; initializers go to the external data file.
class Builder {
 public:
  Builder(pb::GraphProto* g, std::ofstream& data, std::string data_name)
      : g_(g), data_(data), data_name_(std::move(data_name)) {}

  // A node of `outputs` outputs: `out` names the first (else one is made
  // from the node's name), the others are made. Returns their names.
  std::vector<std::string> node_n(const std::string& op, const std::vector<std::string>& inputs, int outputs,
                                  const std::vector<std::pair<std::string, int64_t>>& ints = {},
                                  const std::string& out = "", const std::string& domain = "") {
    auto* n = g_->add_node();
    n->set_op_type(op);
    n->set_name(op + "_" + std::to_string(g_->node_size()));
    if (!domain.empty()) n->set_domain(domain);
    for (const auto& i : inputs) n->add_input(i);
    std::vector<std::string> outs;
    for (int k = 0; k < outputs; ++k) {
      outs.push_back(k == 0 && !out.empty() ? out : "/" + n->name() + "/output_" + std::to_string(k));
      n->add_output(outs.back());
    }
    for (const auto& [k, v] : ints) {
      auto* a = n->add_attribute();
      a->set_name(k);
      a->set_type(pb::AttributeProto::INT);
      a->set_i(v);
    }
    return outs;
  }
  std::string node(const std::string& op, const std::vector<std::string>& inputs, const std::string& out = "",
                   const std::vector<std::pair<std::string, int64_t>>& ints = {}, const std::string& domain = "") {
    return node_n(op, inputs, 1, ints, out, domain)[0];
  }
  // The last node added gets list attribute `name`.
  void ints_attr(const std::string& name, const std::vector<int64_t>& v) {
    auto* a = g_->mutable_node(g_->node_size() - 1)->add_attribute();
    a->set_name(name);
    a->set_type(pb::AttributeProto::INTS);
    for (auto x : v) a->add_ints(x);
  }
  std::string transpose(const std::string& x, const std::vector<int64_t>& perm, const std::string& out = "") {
    auto name = node("Transpose", {x}, out);
    ints_attr("perm", perm);
    return name;
  }

  // A tensor initializer, its bytes in the external data file.
  const std::string& weight(const std::string& name, const at::Tensor& t_in) {
    const auto t = t_in.contiguous().cpu();
    auto* init = g_->add_initializer();
    init->set_name(name);
    init->set_data_type(dtype_of(t.scalar_type()));
    for (auto d : t.sizes()) init->add_dims(d);
    const auto bytes = static_cast<int64_t>(t.numel() * t.element_size());
    // 64-byte aligned offsets, so a runtime can map the file.
    const int64_t pad = (64 - offset_ % 64) % 64;
    static const char zeros[64] = {};
    data_.write(zeros, pad);
    offset_ += pad;
    data_.write(static_cast<const char*>(t.data_ptr()), bytes);
    init->set_data_location(pb::TensorProto::EXTERNAL);
    const auto kv = [&](const std::string& k, const std::string& v) {
      auto* e = init->add_external_data();
      e->set_key(k);
      e->set_value(v);
    };
    kv("location", data_name_);
    kv("offset", std::to_string(offset_));
    kv("length", std::to_string(bytes));
    offset_ += bytes;
    return init->name();
  }
  // A small constant, inline.
  std::string constant(const at::Tensor& t_in, const std::string& hint = "const") {
    const auto t = t_in.contiguous().cpu();
    auto* init = g_->add_initializer();
    init->set_name("/" + hint + "_" + std::to_string(g_->initializer_size()));
    init->set_data_type(dtype_of(t.scalar_type()));
    for (auto d : t.sizes()) init->add_dims(d);
    init->set_raw_data(
        std::string(static_cast<const char*>(t.data_ptr()), static_cast<std::size_t>(t.numel() * t.element_size())));
    return init->name();
  }
  std::string ints(const std::vector<int64_t>& v) { return constant(at::tensor(v, at::kLong), "shape"); }
  std::string scalar(float v) { return constant(at::full({}, v, at::kFloat), "scalar"); }

  void value(pb::ValueInfoProto* vi, const std::string& name, int elem, const std::vector<int64_t>& dims) {
    vi->set_name(name);
    auto* tt = vi->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(elem);
    for (auto d : dims) tt->mutable_shape()->add_dim()->set_dim_value(d);
  }
  void input(const std::string& name, int elem, const std::vector<int64_t>& dims) {
    value(g_->add_input(), name, elem, dims);
  }
  void output(const std::string& name, int elem, const std::vector<int64_t>& dims) {
    value(g_->add_output(), name, elem, dims);
  }

  static int dtype_of(at::ScalarType s) {
    switch (s) {
      case at::kFloat:
        return pb::TensorProto::FLOAT;
      case at::kLong:
        return pb::TensorProto::INT64;
      case at::kByte:
        return pb::TensorProto::UINT8;
      case at::kChar:
        return pb::TensorProto::INT8;
      case at::kShort:
        return pb::TensorProto::INT16;
      case at::kInt:
        return pb::TensorProto::INT32;
      default:
        throw Error(ErrorKind::internal, std::string("onnx export: no ONNX type for ") + at::toString(s));
    }
  }

 private:
  pb::GraphProto* g_;
  std::ofstream& data_;
  std::string data_name_;
  int64_t offset_ = 0;
};

// The input quantizer of Linear `name`, when the QDQ graph simulates one.
model::ActQuant act_of(const Quantization* q, const std::string& name) {
  if (q == nullptr || !q->activations.contains(name)) return {};
  auto a = model::ActQuant::from_json(q->activations[name]);
  if (a.kind != model::ActQuant::Kind::int_tensor && a.kind != model::ActQuant::Kind::none)
    throw Error(ErrorKind::invalid_input, "the ONNX export holds static per-tensor integer input quantizers; " + name +
                                              " has " + q->activations[name].value("kind", std::string("?")));
  return a;
}

bool grouped_in_order(const IntWeight& w) {
  const int64_t in = w.codes.size(1), g = w.group_size <= 0 ? in : w.group_size;
  if (!w.g_idx.defined()) return true;
  return at::equal(w.g_idx.to(at::kLong).cpu(), at::arange(in, at::kLong).div(g, "floor"));
}

// The prefill graph of one Llama under construction: the nodes of each
// piece (norm, Linear, RoPE, block) in the order the graph lists them.
struct LlamaGraph {
  const model::ModelConfig& c;
  const WeightSource& weight;
  const Quantization* qdq;
  Builder& b;
  int64_t AR, CL, P, H, KVH, D, rep;
  std::string cos, sin, mask, eps, scale;               // shared tensors, made by inputs()
  std::map<std::string, std::string> quantized_inputs;  // input tensor -> its QDQ output
  bool ms_domain = false;                               // a com.microsoft op was used

  // The graph's inputs, and the RoPE tables for positions 0..CL-1 as
  // LlamaModel computes them.
  void inputs() {
    b.input("input_ids", pb::TensorProto::INT64, {1, AR});
    b.input("position_ids", pb::TensorProto::INT64, {1, AR});
    b.input("attention_mask", pb::TensorProto::FLOAT, {1, 1, AR, CL});
    for (int64_t l = 0; l < c.layers; ++l) {
      b.input("past_key_" + std::to_string(l) + "_in", pb::TensorProto::FLOAT, {1, KVH, P, D});
      b.input("past_value_" + std::to_string(l) + "_in", pb::TensorProto::FLOAT, {1, KVH, P, D});
    }
    const auto inv_freq = model::rope_inverse_frequencies(c).to(at::kFloat);
    const auto freqs = at::outer(at::arange(CL, at::kFloat), inv_freq);
    const auto emb = at::cat({freqs, freqs}, -1);
    const auto pos = b.node("Reshape", {"position_ids", b.ints({AR})});
    cos = b.node("Gather", {b.weight("rope.cos", emb.cos()), pos}, "", {{"axis", 0}});  // [AR, D]
    sin = b.node("Gather", {b.weight("rope.sin", emb.sin()), pos}, "", {{"axis", 0}});
    mask = b.node("Reshape", {"attention_mask", b.ints({AR, CL})});
    eps = b.scalar(static_cast<float>(c.rms_norm_eps));
  }

  std::string rms(const std::string& x, const std::string& w, const std::string& out) {
    // In float32, as LlamaModel::rms_norm: x / sqrt(mean(x^2) + eps) * w.
    const auto var = b.node("ReduceMean", {b.node("Mul", {x, x})}, "", {{"keepdims", 1}});
    b.ints_attr("axes", {-1});  // an attribute in opset 17, an input from 18
    const auto normed = b.node("Div", {x, b.node("Sqrt", {b.node("Add", {var, eps})})});
    return b.node("Mul", {normed, b.weight(w, weight(w))}, out);
  }

  // Linear `full`'s weight: its integer codes dequantized per group (QDQ
  // graph), or the float weight.
  std::string weight_of(const std::string& full) {
    const IntWeight* iw = nullptr;
    if (qdq != nullptr && qdq->int_weights != nullptr) {
      const auto it = qdq->int_weights->find(full);
      if (it != qdq->int_weights->end()) iw = &it->second;
    }
    if (iw == nullptr) return b.weight(full + ".weight", weight(full + ".weight"));
    if (!grouped_in_order(*iw))
      throw Error(ErrorKind::invalid_input, full +
                                                ": the QDQ graph holds groups of consecutive columns; this weight has "
                                                "GPTQ's act-order column map (DESC_ACT without STATIC_GROUPS)");
    if (iw->bits > 8) throw Error(ErrorKind::invalid_input, full + ": more than 8 bits");
    const int64_t out_f = iw->codes.size(0), in_f = iw->codes.size(1);
    const int64_t gs = iw->group_size <= 0 ? in_f : iw->group_size;
    if (in_f % gs != 0) throw Error(ErrorKind::invalid_input, full + ": its width is not a whole number of groups");
    const int64_t G = in_f / gs;
    // Unsigned codes [out * G, g], one scale and zero point per row: DequantizeLinear per axis 0.
    const auto codes = b.weight(full + ".weight_quantized", iw->codes.cpu().to(at::kByte).reshape({out_f * G, gs}));
    const auto scale_w = b.weight(full + ".weight_scale", iw->scales.cpu().to(at::kFloat).reshape({out_f * G}));
    const auto zp = b.weight(full + ".weight_zero_point", iw->zeros.cpu().to(at::kByte).reshape({out_f * G}));
    return b.node("Reshape",
                  {b.node("DequantizeLinear", {codes, scale_w, zp}, "", {{"axis", 0}}), b.ints({out_f, in_f})});
  }

  // Linear `full`'s input x, through its static input quantizer when it has
  // one (one QDQ pair per input tensor and quantizer, shared by its readers).
  std::string input_of(const std::string& full, const std::string& x) {
    const auto a = act_of(qdq, full);
    if (a.kind != model::ActQuant::Kind::int_tensor) return x;
    auto& q = quantized_inputs[x + "@" + std::to_string(a.bits) + "@" + std::to_string(a.scale)];
    if (q.empty()) {
      // Symmetric: zero point 0 of a signed type, saturating at [-2^(b-1), 2^(b-1) - 1].
      if (a.bits != 8 && a.bits != 16)
        throw Error(ErrorKind::invalid_input,
                    full + ": the QDQ graph holds 8- and 16-bit inputs, not " + std::to_string(a.bits));
      const bool wide = a.bits == 16;
      ms_domain = ms_domain || wide;
      const auto s = b.scalar(static_cast<float>(a.scale));
      const auto zp = b.constant(wide ? at::zeros({}, at::kShort) : at::zeros({}, at::kChar), "zero_point");
      const std::string domain = wide ? "com.microsoft" : "";
      q = b.node("DequantizeLinear", {b.node("QuantizeLinear", {x, s, zp}, "", {}, domain), s, zp}, "", {}, domain);
    }
    return q;
  }

  // Linear `full` ("model.layers.0.self_attn.q_proj") on x [AR, in].
  std::string linear(const std::string& prefix, const std::string& short_name, const std::string& x) {
    const std::string full = prefix + short_name;
    const std::string w = weight_of(full);
    std::vector<std::string> ins = {input_of(full, x), w};
    const std::string bias = full + ".bias";
    const bool has_bias =
        (short_name == "self_attn.q_proj" || short_name == "self_attn.k_proj" || short_name == "self_attn.v_proj")
            ? c.qkv_bias
        : short_name == "self_attn.o_proj" ? c.o_bias
                                           : c.mlp_bias;
    if (has_bias) ins.push_back(b.weight(bias, weight(bias)));
    return b.node("Gemm", ins, "", {{"transB", 1}});
  }

  std::string rotate(const std::string& t) {  // t [heads, AR, D]: x * cos + rotate_half(x) * sin
    const auto halves = b.node_n("Split", {t, b.ints({D / 2, D / 2})}, 2, {{"axis", 2}});
    const auto rot = b.node("Concat", {b.node("Neg", {halves[1]}), halves[0]}, "", {{"axis", 2}});
    return b.node("Add", {b.node("Mul", {t, cos}), b.node("Mul", {rot, sin})});
  }

  // Self-attention of block l on the normed input a [AR, hidden], with the
  // KV cache's inputs and outputs; the heads' output [AR, H * D].
  std::string attention(int64_t l, const std::string& p, const std::string& a) {
    const std::string ls = std::to_string(l);
    const auto heads = [&](const std::string& t, int64_t n) {  // [AR, n*D] -> [n, AR, D]
      return b.transpose(b.node("Reshape", {t, b.ints({AR, n, D})}), {1, 0, 2});
    };
    auto q = heads(linear(p, "self_attn.q_proj", a), H);
    auto k = heads(linear(p, "self_attn.k_proj", a), KVH);
    auto v = heads(linear(p, "self_attn.v_proj", a), KVH);
    q = rotate(q);
    k = rotate(k);
    b.node("Unsqueeze", {k, b.ints({0})}, "past_key_" + ls + "_out");
    b.node("Unsqueeze", {v, b.ints({0})}, "past_value_" + ls + "_out");
    const auto past_k = b.node("Reshape", {"past_key_" + ls + "_in", b.ints({KVH, P, D})});
    const auto past_v = b.node("Reshape", {"past_value_" + ls + "_in", b.ints({KVH, P, D})});
    const auto k_all = b.node("Concat", {past_k, k}, "", {{"axis", 1}});  // [KVH, CL, D]
    const auto v_all = b.node("Concat", {past_v, v}, "", {{"axis", 1}});
    // Grouped-query attention: query head j reads KV head j / rep.
    const auto qg = b.node("Reshape", {q, b.ints({KVH, rep, AR, D})});
    const auto kt = b.node("Unsqueeze", {b.transpose(k_all, {0, 2, 1}), b.ints({1})});  // [KVH, 1, D, CL]
    auto scores = b.node("MatMul", {qg, kt});                                           // [KVH, rep, AR, CL]
    scores = b.node("Add", {b.node("Mul", {scores, scale}), mask});
    const auto probs = b.node("Softmax", {scores}, "", {{"axis", -1}});
    const auto ctx = b.node("MatMul", {probs, b.node("Unsqueeze", {v_all, b.ints({1})})});  // [KVH, rep, AR, D]
    return b.node("Reshape",
                  {b.transpose(b.node("Reshape", {ctx, b.ints({H, AR, D})}), {1, 0, 2}), b.ints({AR, H * D})},
                  input_tensor(l, "self_attn.o_proj"));
  }

  // Decoder block l on the residual stream h; the new residual stream.
  std::string block(int64_t l, std::string h) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const auto a = rms(h, p + "input_layernorm.weight", input_tensor(l, "self_attn.q_proj"));
    const auto attn = attention(l, p, a);
    h = b.node("Add", {h, linear(p, "self_attn.o_proj", attn)});
    const auto mm = rms(h, p + "post_attention_layernorm.weight", input_tensor(l, "mlp.gate_proj"));
    const auto gate = linear(p, "mlp.gate_proj", mm);
    const auto up = linear(p, "mlp.up_proj", mm);
    const auto act =
        b.node("Mul", {b.node("Mul", {gate, b.node("Sigmoid", {gate})}), up}, input_tensor(l, "mlp.down_proj"));
    return b.node("Add", {h, linear(p, "mlp.down_proj", act)});
  }

  // Embedding, the blocks, the final norm and lm_head; then the outputs.
  void body() {
    scale = b.scalar(static_cast<float>(1.0 / std::sqrt(static_cast<double>(D))));
    auto h = b.node("Gather",
                    {b.weight("model.embed_tokens.weight", weight("model.embed_tokens.weight")),
                     b.node("Reshape", {"input_ids", b.ints({AR})})},
                    "", {{"axis", 0}});  // [AR, hidden]
    for (int64_t l = 0; l < c.layers; ++l) h = block(l, h);
    const auto hn = rms(h, "model.norm.weight", "model.norm.output");
    const std::string head =
        c.tie_word_embeddings ? "model.embed_tokens.weight" : b.weight("lm_head.weight", weight("lm_head.weight"));
    b.node("Reshape", {b.node("Gemm", {hn, head}, "", {{"transB", 1}}), b.ints({1, AR, c.vocab})}, "logits");
    b.output("logits", pb::TensorProto::FLOAT, {1, AR, c.vocab});
    for (int64_t l = 0; l < c.layers; ++l) {
      b.output("past_key_" + std::to_string(l) + "_out", pb::TensorProto::FLOAT, {1, KVH, AR, D});
      b.output("past_value_" + std::to_string(l) + "_out", pb::TensorProto::FLOAT, {1, KVH, AR, D});
    }
  }
};

void check_shape(const model::ModelConfig& c, const GraphShape& shape) {
  if (const auto problem = model::export_layout_problem(c, "onnx")) throw Error(ErrorKind::invalid_input, *problem);
  if (shape.seq_len < 1 || shape.context_len <= shape.seq_len)
    throw Error(ErrorKind::invalid_input, "ONNX graph " + shape.name() + ": needs 1 <= AR < CL");
  if (shape.context_len > c.max_position)
    throw Error(ErrorKind::invalid_input, "ONNX graph " + shape.name() +
                                              ": the context is longer than the model's "
                                              "max_position_embeddings (" +
                                              std::to_string(c.max_position) + ")");
}

}  // namespace

void write_llama_onnx(const json& config, const WeightSource& weight, const GraphShape& shape, const Quantization* qdq,
                      const fs::path& onnx_path) {
  const auto c = model::ModelConfig::from_json(config);
  check_shape(c, shape);
  fs::path data_path = onnx_path;
  data_path.replace_extension(".data");
  std::ofstream data(data_path, std::ios::binary | std::ios::trunc);
  if (!data) throw Error(ErrorKind::io, "cannot write " + data_path.string());

  pb::ModelProto m;
  m.set_ir_version(8);
  m.set_producer_name("qjobs");
  m.set_model_version(1);
  auto* op = m.add_opset_import();
  op->set_domain("");
  op->set_version(kOpset);
  auto* g = m.mutable_graph();
  g->set_name("llama_" + shape.name());
  const auto meta = [&](const std::string& k, const std::string& v) {
    auto* p = m.add_metadata_props();
    p->set_key(k);
    p->set_value(v);
  };
  meta("qjobs.graph", shape.name());
  meta("qjobs.seq_len", std::to_string(shape.seq_len));
  meta("qjobs.context_len", std::to_string(shape.context_len));
  meta("qjobs.quantization", qdq != nullptr ? "qdq" : "float");
  Builder b(g, data, data_path.filename().string());

  LlamaGraph graph{.c = c,
                   .weight = weight,
                   .qdq = qdq,
                   .b = b,
                   .AR = shape.seq_len,
                   .CL = shape.context_len,
                   .P = shape.context_len - shape.seq_len,
                   .H = c.heads,
                   .KVH = c.kv_heads,
                   .D = c.head_dim,
                   .rep = c.heads / c.kv_heads};
  graph.inputs();
  graph.body();
  if (graph.ms_domain) {
    auto* ms = m.add_opset_import();
    ms->set_domain("com.microsoft");
    ms->set_version(1);
  }
  data.close();
  if (!data) throw Error(ErrorKind::io, "cannot write " + data_path.string());
  std::ofstream f(onnx_path, std::ios::binary | std::ios::trunc);
  if (!f || !m.SerializeToOstream(&f)) throw Error(ErrorKind::io, "cannot write " + onnx_path.string());
}

json aimet_encodings(const json& config, const Quantization& q) {
  const auto c = model::ModelConfig::from_json(config);
  json params = json::array(), acts = json::array();
  int param_bits = 0, act_bits = 0;
  bool all_sym = true;
  if (q.int_weights != nullptr)
    for (const auto& [name, w] : *q.int_weights) {
      const int64_t out_f = w.codes.size(0), in_f = w.codes.size(1);
      const int64_t gs = w.group_size <= 0 ? in_f : w.group_size;
      const auto zeros = w.zeros.cpu().to(at::kLong).contiguous();
      const auto scales = w.scales.cpu().to(at::kDouble).contiguous();
      // Symmetric weights carry the zero point 2^(b-1) (the unsigned codes' middle).
      const bool sym = (zeros == (int64_t{1} << (w.bits - 1))).all().item<bool>();
      all_sym = all_sym && sym;
      param_bits = std::max(param_bits, w.bits);
      json e = {{"name", name + ".weight"}, {"dtype", "INT"}, {"bw", w.bits}, {"is_sym", sym}};
      const auto flat_s = scales.reshape({-1}), flat_z = zeros.reshape({-1});
      std::vector<double> sc(flat_s.data_ptr<double>(), flat_s.data_ptr<double>() + flat_s.numel());
      std::vector<int64_t> off(static_cast<std::size_t>(flat_z.numel()));
      for (std::size_t i = 0; i < off.size(); ++i) off[i] = -flat_z.data_ptr<int64_t>()[i];
      if (q.lpbq && sym && scales.size(1) > 1 && w.bits < 8) {
        // One float scale per channel, integer block multiples, the 8-bit offset.
        const double levels = std::ldexp(1.0, 8 - w.bits);
        const auto channel = scales.amax(1, true) / levels;
        const auto k = at::round(scales / channel).to(at::kLong).contiguous().reshape({-1});
        const auto ch = channel.contiguous().reshape({-1});
        e["enc_type"] = "LPBQ";
        e["bw"] = 8;
        e["compressed_bw"] = w.bits;
        e["block_size"] = gs;
        e["scale"] = std::vector<double>(ch.data_ptr<double>(), ch.data_ptr<double>() + ch.numel());
        e["per_block_int_scale"] = std::vector<int64_t>(k.data_ptr<int64_t>(), k.data_ptr<int64_t>() + k.numel());
        e["offset"] = std::vector<int64_t>(static_cast<std::size_t>(out_f), -128);
        param_bits = std::max(param_bits, 8);
        params.push_back(std::move(e));
        continue;
      }
      if (scales.size(1) == 1) {
        e["enc_type"] = "PER_CHANNEL";
      } else {
        e["enc_type"] = "PER_BLOCK";
        e["block_size"] = gs;
      }
      e["scale"] = sc;
      e["offset"] = off;
      params.push_back(std::move(e));
    }
  std::set<std::string> seen;
  for (int64_t l = 0; l < c.layers; ++l)
    for (const char* lin : kLinears) {
      const std::string full = "model.layers." + std::to_string(l) + "." + lin;
      const auto a = act_of(&q, full);
      if (a.kind != model::ActQuant::Kind::int_tensor) continue;
      const auto tensor = input_tensor(l, lin);
      if (!seen.insert(tensor).second) continue;
      act_bits = std::max(act_bits, a.bits);
      acts.push_back({{"name", tensor},
                      {"dtype", "INT"},
                      {"enc_type", "PER_TENSOR"},
                      {"bw", a.bits},
                      {"is_sym", true},
                      {"scale", {a.scale}},
                      {"offset", {-(int64_t{1} << (a.bits - 1))}}});
    }
  return {{"version", "1.0.0"},
          {"activation_encodings", acts},
          {"param_encodings", params},
          {"excluded_layers", json::array()},
          {"quantizer_args",
           {{"activation_bitwidth", act_bits > 0 ? act_bits : 16},
            {"param_bitwidth", param_bits},
            {"dtype", "int"},
            {"is_symmetric", all_sym},
            {"per_channel_quantization", true},
            {"quant_scheme", "post_training_tf"}}}};
}

}  // namespace qjobs::exporter::onnx
