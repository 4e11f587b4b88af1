// sparse_attention: softmax attention in which every query row attends only
// to its own list of kept keys, the attention of Sparsifiner (PAPERS.md 3).
//
// B batch, H heads, N tokens, hd head dim, K keys kept per sparse row.
//   q, k, v:   [B, H, N, hd], floating, any strides.
//   indices:   [B, H, N - dense_rows, K] int64: row r lists the keys of query
//              dense_rows + r. Keys are in [0, N) and distinct within a row.
//   dense_rows: the first dense_rows queries attend to every key. Sparsifiner
//              keeps its CLS row dense (dense_rows = 1): a row of N keys does
//              not fit the rectangular K-wide index table, so it is a count
//              of leading dense rows rather than an index row.
//   key_mask:  optional [B, N] (any dtype, nonzero = real key); masked keys
//              get 1e6 subtracted from their score (the LRA convention, as
//              block_attention), so a row of padding alone stays finite.
//   scale:     the score scale; 0 means hd^-0.5.
// For a row with key list J:  out_i = sum_{j in J} softmax_J(scale q_i.k_j) v_j,
// which equals dense attention with scores outside J set to -inf. Output
// [B, H, N, hd], contiguous. Nothing N x N is formed: the CPU gathers the K
// kept keys of each row; the probabilities ([.., K] per sparse row) are kept
// for the backward, which scatter-adds into dk, dv in a fixed order (one
// thread per (batch, head)), so gradients are deterministic.
#pragma once
#include "core/tensor.h"

namespace dimix {

Tensor sparse_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& indices,
                        int64_t dense_rows = 0, const Tensor& key_mask = Tensor(), double scale = 0.0);

}  // namespace dimix
