#include "jobs/quant/registry.hpp"

#include "jobs/quant/awq.hpp"
#include "jobs/quant/fp4_quant.hpp"
#include "jobs/quant/fp8_w8a8.hpp"
#include "jobs/quant/gptq.hpp"
#include "jobs/quant/hqq.hpp"
#include "jobs/quant/qoq.hpp"
#include "jobs/quant/rtn.hpp"
#include "jobs/quant/seq_mse.hpp"
#include "jobs/quant/smoothquant.hpp"

namespace qjobs::quant {

const std::vector<AlgorithmRow>& algorithm_registry() {
  static const std::vector<AlgorithmRow> rows = {
      {"RTN", [] { return std::make_unique<RtnAlgorithm>(); }},
      {"AutoAWQ", [] { return std::make_unique<AwqAlgorithm>(); }},
      {"GPTQ", [] { return std::make_unique<GptqAlgorithm>(); }},
      {"HQQ", [] { return std::make_unique<HqqAlgorithm>(); }},
      {"SequentialMSE", [] { return std::make_unique<SequentialMseAlgorithm>(); }},
      {"SmoothQuant", [] { return std::make_unique<SmoothQuantAlgorithm>(); }},
      {"LMQuant", [] { return std::make_unique<LmQuantAlgorithm>(); }},
      {"FP8", [] { return std::make_unique<Fp8Algorithm>(); }},
      {"NVFP4", [] { return std::make_unique<Fp4Algorithm>(Fp4Kind::nvfp4); }},
      {"MXFP4", [] { return std::make_unique<Fp4Algorithm>(Fp4Kind::mxfp4); }},
  };
  return rows;
}

std::unique_ptr<QuantAlgorithm> make_algorithm(const std::string& name) {
  for (const auto& r : algorithm_registry())
    if (r.name == name) return r.make();
  return nullptr;
}

}  // namespace qjobs::quant
