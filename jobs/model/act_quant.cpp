#include "jobs/model/act_quant.hpp"

#include <cmath>

#include "common/error.hpp"
#include "jobs/numeric/fp4.hpp"
#include "jobs/numeric/fp8.hpp"

namespace qjobs::model {
using nlohmann::json;

at::Tensor ActQuant::apply(const at::Tensor& x) const {
  if (kind == Kind::none) return x;
  const auto xf = x.to(at::kFloat);
  at::Tensor s;
  switch (kind) {
    case Kind::int_token:
    case Kind::int_tensor: {
      const double qmax = std::ldexp(1.0, bits - 1) - 1;
      s = kind == Kind::int_token ? (xf.abs().amax(-1, true) / qmax).clamp_min(1e-8) : at::scalar_tensor(scale);
      return (at::clamp(at::round(xf / s), -qmax - 1, qmax) * s).to(x.scalar_type());
    }
    case Kind::fp8_token:
    case Kind::fp8_tensor:
      s = kind == Kind::fp8_token ? (xf.abs().amax(-1, true) / numeric::kFp8E4m3Max).clamp_min(1e-12)
                                  : at::scalar_tensor(scale);
      return (numeric::fp8_e4m3_round(xf / s) * s).to(x.scalar_type());
    case Kind::nvfp4:
      // Blocks of 16 with E4M3 scales under the calibrated global scale.
      return numeric::fp4_fake_quant(xf, numeric::Fp4Kind::nvfp4, scale).to(x.scalar_type());
    case Kind::mxfp4:
      return numeric::fp4_fake_quant(xf, numeric::Fp4Kind::mxfp4).to(x.scalar_type());
    case Kind::none:
      break;
  }
  return x;
}

json ActQuant::to_json() const {
  static const char* names[] = {"none", "int_token", "int_tensor", "fp8_token", "fp8_tensor", "nvfp4", "mxfp4"};
  json j = {{"kind", names[static_cast<int>(kind)]}};
  if (kind == Kind::int_token || kind == Kind::int_tensor) j["bits"] = bits;
  if (kind == Kind::int_tensor || kind == Kind::fp8_tensor || kind == Kind::nvfp4) j["scale"] = scale;
  return j;
}

ActQuant ActQuant::from_json(const json& j) {
  ActQuant a;
  const std::string k = j.value("kind", "none");
  if (k == "none") a.kind = Kind::none;
  else if (k == "int_token") a.kind = Kind::int_token;
  else if (k == "int_tensor") a.kind = Kind::int_tensor;
  else if (k == "fp8_token") a.kind = Kind::fp8_token;
  else if (k == "fp8_tensor") a.kind = Kind::fp8_tensor;
  else if (k == "nvfp4") a.kind = Kind::nvfp4;
  else if (k == "mxfp4") a.kind = Kind::mxfp4;
  else
    throw Error(ErrorKind::invalid_input,
                "activation kind '" + k + "' (none, int_token, int_tensor, fp8_token, fp8_tensor, nvfp4, mxfp4)");
  a.bits = j.value("bits", 8);
  if (a.bits < 2 || a.bits > 16) throw Error(ErrorKind::invalid_input, "activation bits must be in [2, 16]");
  a.scale = j.value("scale", 0.0);
  if ((a.kind == Kind::int_tensor || a.kind == Kind::fp8_tensor || a.kind == Kind::nvfp4) && !(a.scale > 0))
    throw Error(ErrorKind::invalid_input, "activation kind '" + k + "' needs a positive scale");
  return a;
}

at::Tensor KvQuant::apply(const at::Tensor& t, int64_t layer, bool is_key) const {
  if (kind == Kind::none) return t;
  const auto tf = t.to(at::kFloat);
  if (kind == Kind::fp8) {
    const auto& scales = is_key ? k_scale : v_scale;
    if (layer >= static_cast<int64_t>(scales.size()))
      throw Error(ErrorKind::invalid_input, "FP8 KV cache has no scale for layer " + std::to_string(layer));
    const double s = scales[static_cast<std::size_t>(layer)];
    return (numeric::fp8_e4m3_round(tf / s) * s).to(t.scalar_type());
  }
  const int64_t hd = t.size(-1);
  const int64_t g = group > 0 && hd % group == 0 ? group : hd;
  auto shape = t.sizes().vec();
  shape.back() = hd / g;
  shape.push_back(g);
  const auto x = tf.reshape(shape);
  const double qmax = std::ldexp(1.0, bits) - 1;
  const auto mn = x.amin(-1, true), mx = x.amax(-1, true);
  const auto s = ((mx - mn) / qmax).clamp_min(1e-8);
  const auto z = at::round(-mn / s);
  const auto q = at::clamp(at::round(x / s) + z, 0, qmax);
  return ((q - z) * s).reshape(t.sizes()).to(t.scalar_type());
}

json KvQuant::to_json() const {
  if (kind == Kind::none) return json{{"kind", "none"}};
  if (kind == Kind::fp8) return json{{"kind", "fp8"}, {"k_scale", k_scale}, {"v_scale", v_scale}};
  return json{{"kind", "int"}, {"bits", bits}, {"group", group}};
}

KvQuant KvQuant::from_json(const json& j) {
  KvQuant q;
  const std::string k = j.value("kind", "none");
  if (k == "none") return q;
  if (k == "fp8") {
    q.kind = Kind::fp8;
    q.k_scale = j.value("k_scale", std::vector<double>{});
    q.v_scale = j.value("v_scale", std::vector<double>{});
    return q;
  }
  if (k != "int") throw Error(ErrorKind::invalid_input, "kv_cache kind '" + k + "' (none, int, fp8)");
  q.kind = Kind::integer;
  q.bits = j.value("bits", 8);
  q.group = j.value("group", int64_t{0});
  if (q.bits < 2 || q.bits > 8) throw Error(ErrorKind::invalid_input, "kv_cache bits must be in [2, 8]");
  return q;
}

}  // namespace qjobs::model
