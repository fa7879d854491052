// The value types of quantized Linears, as algorithms produce them and the
// export formats pack them (jobs/export/packed.hpp) or a loader reads them
// back (jobs/model/quantized_checkpoint.hpp).
#pragma once

#include <cstdint>

#include <ATen/ATen.h>

#include "jobs/numeric/fp4.hpp"

namespace qjobs::numeric {

// One quantized Linear in integer form (unsigned codes).
struct IntWeight {
  at::Tensor codes;   // [out, in], 0 .. 2^bits - 1: uint8 (bits <= 8) or int32
  at::Tensor scales;  // float32 [out, groups]
  at::Tensor zeros;   // int32 [out, groups]
  at::Tensor g_idx;   // int32 [in]
  int bits = 4;
  int64_t group_size = 128;

  at::Tensor dequantize() const;  // float32 [out, in]
  IntWeight cpu() const;          // the same on the CPU (packing runs there)
  // The group size as the formats record it: -1 when a row is one group.
  int64_t format_group_size() const;
};

// One NVFP4 or MXFP4 Linear.
struct Fp4Weight {
  Fp4Kind kind = Fp4Kind::nvfp4;
  at::Tensor codes;               // uint8 [out, in] E2M1 codes
  at::Tensor scale;               // uint8 [out, in / block]: E4M3 (NVFP4) or E8M0 (MXFP4) codes
  double global_scale = 1;        // NVFP4's G
  double input_global_scale = 0;  // NVFP4 W4A4: the calibrated inputs' G; 0 = none
  bool act = false;               // W4A4: inputs quantized in blocks too (dynamic scales)

  at::Tensor dequantize() const;  // float32 [out, in]
};

// One W8A8 Linear: its 8-bit weight and scales.
struct W8A8Weight {
  at::Tensor codes;        // uint8 [out, in] E4M3 codes (float) or int8 [out, in] values (int)
  at::Tensor scale;        // float32 [out, 1] or [1]
  at::Tensor input_scale;  // float32 [1]; undefined for dynamic activations
};

}  // namespace qjobs::numeric
