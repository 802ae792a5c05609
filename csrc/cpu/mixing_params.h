// Torch-free interface between the torch glue (mixing_op.cpp) and the per-ISA kernels.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include "types.h"

namespace mixerkern { namespace cpu {

// The GELU and dropout settings of the ops that have them (see set_dropout / make_dropout).
struct ActivationSettings {
  bool tanh_gelu = false;
  bool dropout = false;
  uint64_t seed = 0;
  uint32_t keep_threshold = 0;
  float keep_scale = 1.f;
};

// Every op's activation tensors: x/grad_out/out, contiguous in the storage type T.
template <class T> struct Activations {
  int64_t batch = 0;
  const T* x = nullptr;
  const T* grad_out = nullptr;  // backward only
  T* out = nullptr;             // forward: the output; backward: dx
};

// Where the token/channel MLP's LayerNorm and residual sit:
//   Block:    out = X + Drop(MLP(LN(X)))   the Mixer's sub-blocks (token_mixing, channel_mixing)
//   BareMlp:  out = Drop(MLP(X))           the patchless Mixer's sub-layers (token_mlp, channel_mlp)
//   PostNorm: out = LN(X + Drop(MLP(X)))   FNet's feed-forward sub-layer (channel_mixing_postnorm)
enum class MixingForm { Block, BareMlp, PostNorm };

// Everything a token- or channel-mixing kernel needs. x/grad_out/out are (batch, patches, dim)
// contiguous in the storage type T; parameters are contiguous copies in the compute type S.
template <class T> struct MixingArgs : Activations<T>, ActivationSettings {
  using S = compute_t<T>;
  int patches = 0, dim = 0, hidden = 0;
  const S *ln_w = nullptr, *ln_b = nullptr, *b1 = nullptr, *b2 = nullptr;
  const S *w1 = nullptr, *w2 = nullptr;    // fc1/fc2 weights as nn.Linear stores them
  const S *w1t = nullptr, *w2t = nullptr;  // their transposes
  // W2^T in column strips (strip_packed_elems(hidden, dim), the layout of gemm.h's pack_strips),
  // packed once per call for the channel forwards' fc2 when dim is a multiple of 64 (see
  // fc2_forward_gemm; null otherwise).
  const S* w2t_strips = nullptr;
  S eps = S(1e-6);
  MixingForm form = MixingForm::Block;  // ln_w / ln_b / eps are unused by BareMlp
  // The weights of the bf16-dot forwards (tables with KernelTable::bf16_dot; bf16 storage, set by
  // the glue, null otherwise), bf16 with the GEMM depth padded to even (gemm_bf16.h): token
  // mixing's W1 (H x P) and W2 (P x H) as A operands (rows), channel mixing's W1^T (D x H) and
  // W2^T (H x D) as B operands (pair strips).
  const bf16 *fc1_dot = nullptr, *fc2_dot = nullptr;
  // The bf16-dot backwards' weights (null otherwise: the backward computes in fp32). W2 as pair
  // strips (B of dZ W2, dZ^T W2); W1 as pair strips for channel mixing (B of dU = dH W1), W1^T as
  // rows for token mixing (A of dU = W1^T dH), which also reads W1^T as pair strips (B of its
  // recomputed H^T = U^T W1^T).
  const bf16 *w1_dot = nullptr, *w2_dot = nullptr, *w1t_dot = nullptr;
  // The activations the backward would otherwise recompute with GEMMs (null: recompute them).
  // The forward of a training step writes them, its backward reads them (layout: see
  // channel_saved_cols).
  S* saved = nullptr;
  // Whether the fc2 epilogue prefetches the next work unit's x and out (the next `rows` rows).
  // mixer_blocks turns it off: its next unit is the same image's next block, already in cache.
  bool prefetch_next = true;
};
template <class T> inline int64_t prefetch_ahead(const MixingArgs<T>& a, int rows) {
  return a.prefetch_next ? int64_t(rows) * a.dim : 0;
}

// One thread's partial parameter gradients (compute type), laid out as ParamGradLayout says.
template <class S> struct GradPartials {
  S *ln_w, *ln_b, *w1, *b1, *w2, *b2;
};

// Work is split over `units` (samples for token mixing, row blocks for channel mixing); each call
// handles units [u0, u1) with `scratch` of scratch_elems(...) compute-type elements.
template <class T> struct MixingKernels {
  using S = compute_t<T>;
  void (*forward)(const MixingArgs<T>&, int64_t u0, int64_t u1, S* scratch);
  void (*backward)(const MixingArgs<T>&, int64_t u0, int64_t u1, S* scratch, const GradPartials<S>&);
};

// Spatial gating (gMLP). x is fc1's output before GELU, (batch, patches, 2 half); per sample,
// with h = Drop(GELU(x)) = [U | V]:  out = U * (W LN(V) + b)  (batch, patches, half).
// grad_out and the forward output are (batch, patches, half); dx is (batch, patches, 2 half).
template <class T> struct GatingArgs : Activations<T>, ActivationSettings {
  using S = compute_t<T>;
  int patches = 0, half = 0;
  const S *ln_w = nullptr, *ln_b = nullptr;      // LN of V, over `half` channels
  const S *proj_w = nullptr, *proj_wt = nullptr;  // W (patches x patches) and W^T
  const S* proj_b = nullptr;                      // (patches)
  S eps = S(1e-6);
};

template <class S> struct GatingGradPartials {
  S *ln_w, *ln_b, *proj_w, *proj_b;
};

template <class T> struct GatingKernels {  // work units are samples
  using S = compute_t<T>;
  void (*forward)(const GatingArgs<T>&, int64_t b0, int64_t b1, S* scratch);
  void (*backward)(const GatingArgs<T>&, int64_t b0, int64_t b1, S* scratch, const GatingGradPartials<S>&);
};

// Fourier mixing (FNet): out = LN(x + Re(F_S X F_D)) per sample, X = x[b] (tokens x dim).
template <class T> struct FourierArgs : Activations<T> {
  using S = compute_t<T>;
  int tokens = 0, dim = 0;
  const S *ln_w = nullptr, *ln_b = nullptr;
  S eps = S(1e-6);
  // Real-DFT-as-GEMM path: bd (dim x 2 H) = [cos | -sin](2 pi d k / dim) for k < H = dim/2 + 1,
  // cs / ss (tokens x tokens) = cos / sin(2 pi s t / tokens).
  const S *bd = nullptr, *cs = nullptr, *ss = nullptr;
  // FFT path instead: spec = rfft2 of x (forward) or of dv (backward's second phase), (batch,
  // tokens, H) complex as interleaved (re, im); dv = dL/d(x + Re FFT2 x), (batch, tokens, dim).
  const S* spec = nullptr;
  S* dv = nullptr;
  // A training step's forward writes the sum the LayerNorm normalizes, x + Re FFT2 x (batch,
  // tokens, dim); its backward reads it instead of transforming x again (null: recompute).
  S* saved = nullptr;
};

template <class S> struct LayerNormGradPartials {
  S *ln_w, *ln_b;
};

template <class T> struct FourierKernels {  // work units are samples
  using S = compute_t<T>;
  void (*forward)(const FourierArgs<T>&, int64_t b0, int64_t b1, S* scratch);
  // GEMM path: the whole backward. FFT path: its first phase, dv only.
  void (*backward)(const FourierArgs<T>&, int64_t b0, int64_t b1, S* scratch, const LayerNormGradPartials<S>&);
  // FFT path's second phase: out = dv + Re(FFT2 dv), from spec = rfft2(dv).
  void (*add_spectrum)(const FourierArgs<T>&, int64_t b0, int64_t b1, S* scratch);
};

// Patch embedding: a Conv2d with kernel = stride = patch on x (batch, channels, height, width),
// written as (batch, patches, dim). Patch q = (gy, gx) of the grid, row-major, flattened in
// (channel, row, column) order as Conv2d's weight (dim, channels, patch, patch) flattens to W (dim x K):
//   out[b, q, :] = W vec(patch q of x[b]) + bias
template <class T> struct PatchArgs : Activations<T> {
  using S = compute_t<T>;
  int channels = 0, height = 0, width = 0, patch = 0, dim = 0;
  const S *w = nullptr, *wt = nullptr;  // W (dim x K); forward: W^T packed in strips (strip_packed_elems(K, dim))
  // The bf16-dot forward's weight instead of wt (bf16 storage with KernelTable::bf16_dot; set by
  // the glue, null otherwise): W^T (K x dim) as gemm_bf16.h's pair strips.
  const bf16* wt_dot = nullptr;
  // The bf16-dot backward's weight (likewise): W (dim x K) as pair strips, dXp's B operand.
  const bf16* w_dot = nullptr;
  const S* bias = nullptr;  // backward: out (dx) may be null, when x needs no gradient
  int grid_w() const { return width / patch; }
  int patches() const { return (height / patch) * grid_w(); }
  int depth() const { return channels * patch * patch; }  // K, the length of a flattened patch
  int64_t image_elems() const { return int64_t(channels) * height * width; }
};

template <class S> struct PatchGradPartials {
  S *w, *bias;
};

template <class T> struct PatchKernels {  // work units are images
  using S = compute_t<T>;
  void (*forward)(const PatchArgs<T>&, int64_t b0, int64_t b1, S* scratch);
  void (*backward)(const PatchArgs<T>&, int64_t b0, int64_t b1, S* scratch, const PatchGradPartials<S>&);
};

// Mixer blocks run image by image (mixer_blocks, mixer_features): each image optionally through
// the patch embedding first, then through every block's token and channel mixing (Block form, no
// dropout; the args' x and out are set per image), then written out as tokens (B, P, D) or
// pooled: the mean over its patches (B, D), after a LayerNorm if norm_w is set.
template <class T> struct BlocksArgs {
  using S = compute_t<T>;
  const T* x = nullptr;  // tokens (B, P, D), or images when stem is set
  T* out = nullptr;
  int64_t batch = 0;
  int patches = 0, dim = 0, depth = 0;
  const PatchArgs<T>* stem = nullptr;
  const MixingArgs<T>* token = nullptr;  // depth of each
  const MixingArgs<T>* channel = nullptr;
  bool pool = false;
  const S *norm_w = nullptr, *norm_b = nullptr;
  S eps = 0;
  size_t token_scratch = 0, channel_scratch = 0, stem_scratch = 0;  // the kernels' parts of the scratch
};

template <class T> struct BlocksKernels {  // work units are images
  void (*forward)(const BlocksArgs<T>&, int64_t b0, int64_t b1, compute_t<T>* scratch);
};

template <class T> struct OpKernels {
  MixingKernels<T> token, channel;
  GatingKernels<T> gating;
  FourierKernels<T> fourier;
  PatchKernels<T> patch;
  BlocksKernels<T> blocks;
};

struct KernelTable {
  const char* isa;
  OpKernels<float> f32;
  OpKernels<bf16> b16;
  OpKernels<double> f64;  // generic table only
  // b16's mixing and patch forwards take MixingArgs::fc1_dot / fc2_dot, PatchArgs::wt_dot; their
  // backwards MixingArgs::w1_dot / w2_dot / w1t_dot, PatchArgs::w_dot
  bool bf16_dot = false;
};

const KernelTable& avx512_kernel_table();
const KernelTable& avx512bf16_kernel_table();
const KernelTable& avx512bf16_emulated_kernel_table();
const KernelTable& generic_kernel_table();

// ---- work split and scratch sizes (shared by glue and kernels) ---------------------------------
constexpr int kChannelRowBlock = 64;  // rows of (B*P, D) handled together by channel mixing's forward
// The backwards take larger blocks: each block's weight-gradient GEMMs read and write all of dW1
// and dW2 (2 D H fp32, 512 KB at D = H = 256), so the block's depth sets that traffic per row.
// bf16 backward at B = 128, P = 64, D = H = 256 (ms, separate builds, two runs each): 64 rows
// 17.9 (Block) / 22.0 (post-norm), 128 rows 14.0-14.6 / 19.0-19.7, 256 rows 13.6-16.3 / 17.7-19.5
// (its scratch leaves L2); at H = 64: 7.7 / 7.2 -> 5.8-7.0 / 6.3-6.6.
constexpr int kChannelBackwardRows = 128;

inline int64_t token_units(int64_t batch, int, int) { return batch; }
inline int64_t channel_units(int64_t batch, int patches, int, bool backward = false) {
  const int rows = backward ? kChannelBackwardRows : kChannelRowBlock;
  return (batch * patches + rows - 1) / rows;
}
// The forwards hand GEMMs some B operands packed in strips of kStripCols columns (gemm.h's
// kStripWidth): K x N takes strip_packed_elems(K, N).
constexpr int kStripCols = 64;
inline int column_strips(int N) { return (N + kStripCols - 1) / kStripCols; }
inline size_t strip_packed_elems(int K, int N) { return size_t(column_strips(N)) * K * kStripCols; }
// The bf16-dot GEMMs (gemm_bf16.h) take their depth K in pairs, padded to even.
inline int depth_pairs(int K) { return (K + 1) / 2; }
// Forward: U in strips, one strip of H; with bf16 dot products U's strips as bf16 pairs in U's
// place, and GELU(H)'s strip as bf16 pairs (depth_pairs(H) pair rows of 64 columns = 64 floats' bytes each).
// The bf16-dot token backward's operands, in floats: U and dZ as pair strips over P, dH over H,
// A^T and dH^T over D, and P bf16 rows of D (dZ's, then U's).
inline size_t token_dot_scratch(int P, int D, int H) {
  const size_t P2 = size_t(depth_pairs(P)), D2 = size_t(depth_pairs(D)), H2 = size_t(depth_pairs(H));
  return kStripCols * ((2 * P2 + H2) * column_strips(D) + 2 * D2 * column_strips(H)) + size_t(P) * D2;
}
inline size_t token_scratch(int P, int D, int H, bool backward) {
  if (backward) return 3 * size_t(P) * D + 3 * size_t(H) * D + 2 * size_t(P) + token_dot_scratch(P, D, H);
  return strip_packed_elems(P, D) + size_t(H) * kStripCols + size_t(depth_pairs(H)) * kStripCols;
}
// The bf16-dot channel backward's operands (channel_mlp_backward_block), in floats: dZ, U, A and dH
// as pair strips over a block's rows, dZ and dH as bf16 rows.
inline size_t channel_dot_scratch(int D, int H) {
  const size_t R = kChannelBackwardRows, pairs = size_t(depth_pairs(int(R)));
  return pairs * kStripCols * 2 * (column_strips(D) + column_strips(H)) + R * (depth_pairs(D) + depth_pairs(H));
}
// Forward: U and H (rows x D, rows x H); with bf16 dot products U as bf16 rows in U's place, and
// GELU(H) as bf16 rows. Backward: the fp32 tiles, then channel_dot_scratch.
inline size_t channel_scratch(int, int D, int H, bool backward, MixingForm form) {
  if (!backward) return kChannelRowBlock * (size_t(D) + H + depth_pairs(H));
  const size_t R = kChannelBackwardRows;
  return (form == MixingForm::PostNorm ? 5 * R * D + 2 * R * H : 3 * R * D + 2 * R + 2 * R * H) +
         channel_dot_scratch(D, H);
}
// What MixingArgs::saved holds (channel mixing only; the token kernels ignore it): H = U W1^T + b1
// of every row (B*P x H), followed, in the post-norm form, by the sum Z that its LayerNorm
// normalizes, of every row (B*P x D). Two planes, not rows of [H | Z]: the backward read a block's
// H rows, then its Z rows, each skipping every other KB, and that GELU pass took 3.6x the time it
// takes on contiguous rows (most likely the hardware prefetcher falling behind).
inline int channel_saved_cols(int D, int H, MixingForm form) { return H + (form == MixingForm::PostNorm ? D : 0); }

inline size_t round_to_lanes(size_t n) { return (n + 15) / 16 * 16; }  // keeps sub-buffers 64-byte aligned
// Fourier mixing: z, the mixed sample (tokens x dim), and the GEMM path's Y (tokens x 2H), P and Q
// (tokens x H), plus rows and per-row statistics; the backward also holds dv and X in fp32.
inline int fourier_half(int dim) { return dim / 2 + 1; }
inline size_t fourier_scratch(int tokens, int dim, bool backward) {
  const size_t sd = round_to_lanes(size_t(tokens) * dim), h = size_t(fourier_half(dim));
  const size_t gemm = round_to_lanes(tokens * 2 * h) + 2 * round_to_lanes(tokens * h);
  return sd * (backward ? 3 : 2) + gemm + 2 * round_to_lanes(dim) + 2 * round_to_lanes(tokens);
}
// The patch-embedding backward takes images in groups of about kPatchGroupRows patch rows, so that
// dW += G^T Xp runs one GEMM of depth ~256 per group rather than one of depth P per image (its
// accumulation into dW is a read and a write of all of dW per GEMM). Larger groups leave L2:
// 1024 rows ran 0.93-0.94x of 256 (C++ A/B, mixer-cifar100's stem, batch 128).
constexpr int kPatchGroupRows = 256;
inline int patch_group(int P) { return P >= kPatchGroupRows ? 1 : kPatchGroupRows / P; }
// Forward: one image's patches Xp (P x K). Backward: a group's Xp, dXp and G, and W in strips or,
// with bf16 dot products, G and Xp as pair strips over the rows and G as bf16 rows.
inline size_t patch_scratch(int P, int K, int D, bool backward) {
  if (!backward) return round_to_lanes(size_t(P) * K);
  const size_t rows = size_t(patch_group(P)) * P, pairs = size_t(depth_pairs(int(rows)));
  const size_t dot = pairs * kStripCols * (column_strips(D) + column_strips(K)) + rows * depth_pairs(D);
  return 2 * round_to_lanes(rows * K) + round_to_lanes(rows * D) + std::max(strip_packed_elems(D, K), dot);
}
// mixer_blocks' own part after the kernels' (BlocksArgs): when pooling, the image's tokens (P x D,
// storage type) and the pooled sums (D).
inline size_t blocks_scratch(int P, int D) { return round_to_lanes(size_t(P) * D) + round_to_lanes(D); }
inline size_t gating_scratch(int P, int half, bool backward) {
  const size_t tile = round_to_lanes(size_t(P) * half);
  return backward ? 6 * tile + 2 * round_to_lanes(P) : 2 * tile + round_to_lanes(half);
}

}}  // namespace mixerkern::cpu
