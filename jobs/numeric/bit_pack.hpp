// Integer codes packed into int32 words, as the packed checkpoint formats
// store them (jobs/export/packed.hpp has the layouts).
#pragma once

#include <ATen/ATen.h>

namespace qjobs::numeric {

// AutoAWQ's order of 8 output channels inside a word: nibble k holds
// channel 8j + kAwqOrder[k].
constexpr int kAwqOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};

// Packs the last dimension of x (int [rows, cols], values < 2^bits) into
// int32 [rows, ceil(cols / (32 / bits))]: value k of word j sits at bits*k and
// comes from column (j * per + order[k]) (order nullptr: k). A width that
// words do not divide is padded with zeros.
at::Tensor pack_last(const at::Tensor& x, int bits, const int* order);

// The inverse: int32 words [rows, n] to int32 values [rows, n * 32 / bits].
at::Tensor unpack_last(const at::Tensor& words, int bits, const int* order);

// compressed-tensors' pack-quantized layout (its pack_to_int32), for any
// width of 1 to 8 bits: a row's values form one bit stream, value i at
// bits [i*bits, i*bits + bits) of it, word w holding stream bits
// [32w, 32w + 32) (a value may straddle two words); a row of cols values
// takes ceil(cols * bits / 32) words. Where bits divides 32 this is
// pack_last with no order.
at::Tensor pack_dense(const at::Tensor& x, int bits);

// The inverse: the first `cols` values of each row. Throws
// Error(data_corruption) when the words hold fewer than cols values.
at::Tensor unpack_dense(const at::Tensor& words, int bits, int64_t cols);

}  // namespace qjobs::numeric
