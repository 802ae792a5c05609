// Torch glue of the patch embedding shared by its op (patch_embed.cpp) and mixer_features
// (mixing_op.cpp): argument checks and the parameters in the layouts the kernels read.
#pragma once
#include "op_glue.h"

namespace mixerkern { namespace cpu {

// `op` and `prefix` name the op and the parameters in messages (mixer_features: "stem_").
inline void check_patch_inputs(const char* op, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                               const std::string& prefix = "") {
  const std::string w_name = prefix + "weight", b_name = prefix + "bias";
  TORCH_CHECK(x.dim() == 4, "mixerkern.", op, ": x must be 4-D (B, in_chans, height, width), got shape ",
              shape_str(x.sizes()));
  check_dtypes_devices(op, x, {{w_name.c_str(), &weight}, {b_name.c_str(), &bias}});
  const int64_t C = x.size(1), H = x.size(2), W = x.size(3);
  TORCH_CHECK(weight.dim() == 4 && weight.size(1) == C && weight.size(2) == weight.size(3) && weight.size(2) > 0 &&
                  weight.size(0) > 0,
              "mixerkern.", op, ": ", w_name, " must have shape (dim, in_chans, patch, patch) with in_chans = ", C,
              " for x of shape ", shape_str(x.sizes()), ", got ", shape_str(weight.sizes()));
  const int64_t D = weight.size(0), p = weight.size(2);
  TORCH_CHECK(H % p == 0 && W % p == 0, "mixerkern.", op, ": x's height and width must be multiples of the patch size ",
              p, " (", w_name, ".size(-1)), got x of shape ", shape_str(x.sizes()));
  TORCH_CHECK(bias.sizes() == at::IntArrayRef({D}), "mixerkern.", op, ": ", b_name, " must have shape (", D,
              ",) for ", w_name, " of shape ", shape_str(weight.sizes()), ", got ", shape_str(bias.sizes()));
  TORCH_CHECK(C * p * p < (1 << 30) && D < (1 << 30) && H * W < (1 << 30), "mixerkern.", op, ": dimensions too large");
}

// Compute-type copies of W (dim x K) and, for the forward, W^T packed in 64-column strips; with
// the bf16-dot tables, a bf16 forward's W^T or a backward's W as pair strips instead (and no fp32
// W). Plus the shapes.
template <class T> struct PreparedPatch {
  using S = compute_t<T>;
  at::Tensor w, wt, wt_dot, w_dot, bias;
  PatchArgs<T> args;

  PreparedPatch(bool forward, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias_in) {
    const auto ct = std::is_same_v<S, double> ? at::kDouble : at::kFloat;
    const at::Tensor w_rows = weight.reshape({weight.size(0), -1});  // W (dim x K)
    bool dot = false;
    if constexpr (std::is_same_v<T, bf16>) dot = active_kernels().bf16_dot;
    if (dot && forward) {
      wt_dot = bf16_pair_strips(w_rows.t());  // bf16, as x
      args.wt_dot = data<bf16>(wt_dot);
    } else if (dot) {
      w_dot = bf16_pair_strips(w_rows);
      args.w_dot = data<bf16>(w_dot);
    } else {
      w = w_rows.to(ct).contiguous();
      args.w = w.data_ptr<S>();
    }
    if (forward && !dot) {  // [strip][K][64], zero-padded past dim
      const int64_t D = w.size(0), K = w.size(1), strips = column_strips(int(D));
      wt = at::constant_pad_nd(w.t(), {0, strips * kStripCols - D}).view({K, strips, kStripCols}).permute({1, 0, 2})
               .contiguous();
      args.wt = wt.data_ptr<S>();
    }
    bias = bias_in.to(ct).contiguous();
    args.batch = x.size(0);
    args.channels = int(x.size(1));
    args.height = int(x.size(2));
    args.width = int(x.size(3));
    args.patch = int(weight.size(2));
    args.dim = int(weight.size(0));
    args.bias = bias.data_ptr<S>();
  }
};

}}  // namespace mixerkern::cpu
