// The algorithms, one line each. Adding one: its files under jobs/quant/
// (NAME_params.{hpp,cpp}: the typed parameters and the catalog row
// NAME_info(), without libtorch; NAME.{hpp,cpp}: the QuantAlgorithm and
// make_NAME()), and one line here. The catalog (jobs/quant/catalog.cpp, what
// the server validates against) and the registry of implementations
// (jobs/quant/registry.cpp) are both built from this list, in this order.
#pragma once

#define QJOBS_ALGORITHMS(X) \
  X(rtn)                    \
  X(awq)                    \
  X(gptq)                   \
  X(seq_mse)                \
  X(hqq)                    \
  X(smoothquant)            \
  X(lmquant)                \
  X(fp8)                    \
  X(nvfp4)                  \
  X(mxfp4)                  \
  X(quarot)
