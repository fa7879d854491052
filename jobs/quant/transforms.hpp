// Function-preserving transforms of a Llama-family model, the groundwork of
// QoQ (Lin et al., 2024, "QServe"): each changes weights so that activations
// and weights quantize better while the model in full precision computes the
// same logits (up to float rounding).
//
//   fuse_norms         every RMSNorm weight into the Linears that read it
//                      (q/k/v, gate/up, lm_head); the norms become 1. A tied
//                      lm_head is untied first.
//   rotate_residual    h -> h Q for an orthogonal Q: embedding E Q, readers
//                      of the residual W Q, writers (o_proj, down_proj) Q^T W.
//                      RMSNorm with unit weight commutes with Q, so the norms
//                      must be fused first.
//   rotate_value_heads v -> v H per head (v_proj rows H^T W per KV head,
//                      o_proj columns W H per query head): attention mixes
//                      values linearly, so o_proj sees x H and undoes it.
//   smooth_value_out   v channel / s, the o_proj columns reading it * s.
//   smooth_up_down     up_proj rows / s, down_proj columns * s (the product
//                      act(gate) * up is linear in up).
//   smooth_attention   keys after RoPE / lambda, queries * lambda, with
//                      lambda equal on the RoPE pair (i, i + head_dim/2) so it
//                      commutes with the rotation; folded into the k_proj and
//                      q_proj rows (and biases).
//   reorder_intermediate  a permutation of the MLP's intermediate channels.
#pragma once

#include <cstdint>

#include <ATen/ATen.h>

#include "jobs/model/llama_model.hpp"

namespace qjobs::quant {

// float32 [n, n] orthogonal. n a power of two: the normalized Sylvester
// Hadamard matrix, with columns multiplied by random signs when seed != 0
// (QuaRot's randomized Hadamard). Any other n: a random orthogonal matrix
// (QR of a Gaussian matrix, signs fixed), from seed.
at::Tensor rotation_matrix(int64_t n, uint64_t seed);
bool is_power_of_two(int64_t n);

void fuse_norms(model::LlamaModel& m);
// REQUIRES: fuse_norms ran (the norms are all 1); Q float32 [hidden, hidden].
void rotate_residual(model::LlamaModel& m, const at::Tensor& Q);
// H float32 [head_dim, head_dim], orthogonal.
void rotate_value_heads(model::LlamaModel& m, const at::Tensor& H);

// s: float32 [kv_heads * head_dim], > 0.
void smooth_value_out(model::DecoderLayer& l, const model::ModelConfig& c, const at::Tensor& s);
// s: float32 [intermediate], > 0.
void smooth_up_down(model::DecoderLayer& l, const at::Tensor& s);
// lambda: float32 [kv_heads * head_dim], > 0, lambda[i] == lambda[i + head_dim/2] in each head.
void smooth_attention(model::DecoderLayer& l, const model::ModelConfig& c, const at::Tensor& lambda);
// perm: int64 [intermediate], a permutation; new channel j is old perm[j].
void reorder_intermediate(model::DecoderLayer& l, const at::Tensor& perm);

// Query or key projections y [B, T, heads * head_dim] after RoPE at
// positions 0..T-1: float32, same shape.
at::Tensor after_rope(const model::LlamaModel& m, const at::Tensor& y);

}  // namespace qjobs::quant
