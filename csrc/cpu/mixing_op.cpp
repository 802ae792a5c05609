#include "mixing_op.h"

#include <algorithm>
#include <string>
#include <vector>

#include "dispatch.h"
#include "op_glue.h"
#include "patch_embed_op.h"

namespace mixerkern { namespace cpu {
namespace {

const char* op_name(MixingKind kind, MixingForm form) {
  if (form == MixingForm::BareMlp) return kind == MixingKind::Token ? "token_mlp" : "channel_mlp";
  if (form == MixingForm::PostNorm) return "channel_mixing_postnorm";
  return kind == MixingKind::Token ? "token_mixing" : "channel_mixing";
}

struct Params {  // the six parameter tensors, in schema order (no LN ones for the bare MLP)
  MixingForm form;
  const at::Tensor &ln_w, &ln_b, &w1, &b1, &w2, &b2;
  bool normalized() const { return form != MixingForm::BareMlp; }
  // The post-norm form under autocast (mixerkern/ops/channel_mixing_postnorm.py): bf16 GEMM weights
  // with fp32 x. The GEMMs then take bf16 operands, the residual and LayerNorm stay fp32, as
  // autocast runs Linear and LayerNorm.
  bool bf16_weights(const at::Tensor& x) const {
    return form == MixingForm::PostNorm && x.scalar_type() == at::kFloat && w1.scalar_type() == at::kBFloat16 &&
           w2.scalar_type() == at::kBFloat16;
  }
};

// `op` and `prefix` name the op and its parameters in messages (mixer_blocks: "block 0 token_", ...).
void check_inputs(MixingKind kind, const at::Tensor& x, const Params& p, c10::string_view approximate,
                  double dropout_p, const char* op = nullptr, const std::string& prefix = "") {
  const char* name = op ? op : op_name(kind, p.form);
  TORCH_CHECK(x.dim() == 3, "mixerkern.", name, ": x must be 3-D (B, num_patches, dim), got shape ",
              shape_str(x.sizes()));
  const std::string ln_w = prefix + "ln_weight", ln_b = prefix + "ln_bias", w1 = prefix + "fc1_weight",
                    b1 = prefix + "fc1_bias", w2 = prefix + "fc2_weight", b2 = prefix + "fc2_bias";
  check_dtypes_devices(name, x, {{b1.c_str(), &p.b1}, {b2.c_str(), &p.b2}});
  if (p.bf16_weights(x)) check_dtypes_devices(name, p.w1, {{w2.c_str(), &p.w2}});
  else check_dtypes_devices(name, x, {{w1.c_str(), &p.w1}, {w2.c_str(), &p.w2}});
  if (p.normalized()) check_dtypes_devices(name, x, {{ln_w.c_str(), &p.ln_w}, {ln_b.c_str(), &p.ln_b}});
  TORCH_CHECK(p.w1.dim() == 2, "mixerkern.", name, ": ", w1, " must be 2-D, got shape ", shape_str(p.w1.sizes()));
  const int64_t P = x.size(1), D = x.size(2), H = p.w1.size(0);
  const int64_t mixed = kind == MixingKind::Token ? P : D;  // the axis the MLP mixes
  std::vector<std::pair<std::string, std::pair<const at::Tensor*, std::vector<int64_t>>>> expected = {
      {w1, {&p.w1, {H, mixed}}}, {b1, {&p.b1, {H}}}, {w2, {&p.w2, {mixed, H}}}, {b2, {&p.b2, {mixed}}}};
  if (p.normalized()) expected.insert(expected.begin(), {{ln_w, {&p.ln_w, {D}}}, {ln_b, {&p.ln_b, {D}}}});
  for (const auto& [arg, te] : expected)
    TORCH_CHECK(te.first->sizes() == at::IntArrayRef(te.second), "mixerkern.", name, ": ", arg, " must have shape ",
                shape_str(te.second), " for x of shape ", shape_str(x.sizes()), " and ", w1, " of shape ",
                shape_str(p.w1.sizes()), ", got ", shape_str(te.first->sizes()));
  TORCH_CHECK(H > 0, "mixerkern.", name, ": the hidden size (", w1, ".size(0)) must be positive");
  TORCH_CHECK(P < (1 << 30) && D < (1 << 30) && H < (1 << 30), "mixerkern.", name, ": dimensions too large");
  check_settings(name, approximate, dropout_p);
}

// Compute-type copies of the parameters in the layouts the kernels read, plus the scalar settings.
template <class T> struct Prepared {
  using S = compute_t<T>;
  at::Tensor ln_w, ln_b, w1, b1, w2, b2, w1t, w2t, w2t_strips, fc1_dot, fc2_dot, w1_dot, w2_dot, w1t_dot;
  MixingArgs<T> args;

  // forward: also pack W2^T in strips for the channel forwards' fc2 (the backwards do not read it).
  // saved: the backward has the training forward's activations, so it recomputes no GEMM.
  Prepared(MixingKind kind, bool forward, const at::Tensor& x, const Params& p, double eps,
           c10::string_view approximate, double dropout_p, const std::optional<at::Tensor>& seed,
           bool saved = false) {
    const auto ct = std::is_same_v<S, double> ? at::kDouble : at::kFloat;
    auto prep = [&](const at::Tensor& t) { return t.to(ct).contiguous(); };
    if (p.normalized()) {
      ln_w = prep(p.ln_w); ln_b = prep(p.ln_b);
      args.ln_w = ln_w.data_ptr<S>(); args.ln_b = ln_b.data_ptr<S>();
    }
    args.form = p.form;
    b1 = prep(p.b1); b2 = prep(p.b2);
    bool dot = false;  // the bf16-dot forwards read only their bf16 layouts: no fp32 weights at all
    if constexpr (!std::is_same_v<T, double>)
      if (active_kernels().bf16_dot && (std::is_same_v<T, bf16> || p.bf16_weights(x))) {
        if (forward) {
          prepare_bf16_dot(kind, p);
          dot = true;
        } else {  // the backward's (MixingArgs::w1_dot)
          w2_dot = bf16_pair_strips(p.w2);
          args.w2_dot = data<bf16>(w2_dot);
          w1_dot = kind == MixingKind::Token ? bf16_depth_rows(p.w1.t()) : bf16_pair_strips(p.w1);
          args.w1_dot = data<bf16>(w1_dot);
          if (kind == MixingKind::Token) {
            w1t_dot = bf16_pair_strips(p.w1.t());
            args.w1t_dot = data<bf16>(w1t_dot);
          }
        }
      }
    // The token bf16-dot backward reads only its bf16 layouts too; the channel one keeps W1^T and
    // W2^T for recomputing H (and Z) when the forward saved nothing.
    if (!dot && !(args.w2_dot && (kind == MixingKind::Token || saved))) {
      w1 = prep(p.w1); w2 = prep(p.w2);
      args.w1 = w1.data_ptr<S>(); args.w2 = w2.data_ptr<S>();
      w1t = w1.t().contiguous(); w2t = w2.t().contiguous();
      args.w1t = w1t.data_ptr<S>(); args.w2t = w2t.data_ptr<S>();
    }
    if (!dot && forward && kind == MixingKind::Channel && w2t.size(1) % kStripCols == 0) {  // [strip][H][64]
      const int64_t H = w2t.size(0), D = w2t.size(1), strips = column_strips(int(D));
      w2t_strips = w2t.view({H, strips, kStripCols}).permute({1, 0, 2}).contiguous();
      args.w2t_strips = w2t_strips.data_ptr<S>();
    }
    args.batch = x.size(0);
    args.patches = int(x.size(1));
    args.dim = int(x.size(2));
    args.hidden = int(p.w1.size(0));
    args.b1 = b1.data_ptr<S>(); args.b2 = b2.data_ptr<S>();
    args.eps = S(eps);
    args.tanh_gelu = approximate == "tanh";
    set_dropout(args, dropout_p, seed);
  }

  // The bf16-dot forwards' weights (MixingArgs::fc1_dot, gemm_bf16.h's layouts): token mixing's
  // W1, W2 as rows with the depth padded to even, channel mixing's W1^T, W2^T as pair strips.
  void prepare_bf16_dot(MixingKind kind, const Params& p) {
    const at::Tensor &w1b = p.w1, &w2b = p.w2;  // bf16, as x (check_inputs)
    fc1_dot = kind == MixingKind::Token ? bf16_depth_rows(w1b) : bf16_pair_strips(w1b.t());
    fc2_dot = kind == MixingKind::Token ? bf16_depth_rows(w2b) : bf16_pair_strips(w2b.t());
    args.fc1_dot = data<bf16>(fc1_dot);
    args.fc2_dot = data<bf16>(fc2_dot);
  }
};

template <class T> const MixingKernels<T>& kernels_for(MixingKind kind) {
  return kind == MixingKind::Token ? op_kernels_for<T>().token : op_kernels_for<T>().channel;
}

// What a channel-mixing training step's forward saves for the backward (mixing_params.h), in the
// compute type: (B, P, H), or (B, P, H + D) in the post-norm form (as two planes, H then Z: see
// channel_saved_cols). Token mixing saves nothing.
std::vector<int64_t> saved_shape(MixingKind kind, MixingForm form, const at::Tensor& x, int64_t H) {
  TORCH_CHECK(kind == MixingKind::Channel, "mixerkern: only the channel-mixing kernels save activations");
  return {x.size(0), x.size(1), channel_saved_cols(int(x.size(2)), int(H), form)};
}

template <class T> int64_t units(MixingKind kind, const MixingArgs<T>& a, bool backward) {
  return kind == MixingKind::Token ? token_units(a.batch, a.patches, a.dim)
                                   : channel_units(a.batch, a.patches, a.dim, backward);
}
template <class T> size_t scratch_elems(MixingKind kind, const MixingArgs<T>& a, bool backward) {
  return kind == MixingKind::Token ? token_scratch(a.patches, a.dim, a.hidden, backward)
                                   : channel_scratch(a.patches, a.dim, a.hidden, backward, a.form);
}

// For x's dtype: prepares the parameters, lets `bind` fill in the tensor pointers of the args, then
// runs `work(args, kernels, u0, u1, scratch)` over the op's work units on all threads.
template <class Bind, class Work>
void run_parallel(MixingKind kind, const at::Tensor& x, const Params& p, double eps, c10::string_view approximate,
                  double dropout_p, const std::optional<at::Tensor>& seed, bool backward, bool saved, Bind&& bind,
                  Work&& work) {
  with_storage_type(x.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    Prepared<T> prep(kind, !backward, x, p, eps, approximate, dropout_p, seed, saved);
    MixingArgs<T>& a = prep.args;
    bind(a);
    const auto& k = kernels_for<T>(kind);
    parallel_units<compute_t<T>>(units(kind, a, backward), scratch_elems(kind, a, backward),
                                 [&](int64_t u0, int64_t u1, compute_t<T>* buf) { work(a, k, u0, u1, buf); });
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> mixing_forward(MixingKind kind, MixingForm form, bool save, const at::Tensor& x_in,
                                                  const at::Tensor& ln_weight, const at::Tensor& ln_bias,
                                                  const at::Tensor& fc1_weight, const at::Tensor& fc1_bias,
                                                  const at::Tensor& fc2_weight, const at::Tensor& fc2_bias, double eps,
                                                  c10::string_view approximate, double dropout_p,
                                                  const std::optional<at::Tensor>& seed) {
  const Params p{form, ln_weight, ln_bias, fc1_weight, fc1_bias, fc2_weight, fc2_bias};
  check_inputs(kind, x_in, p, approximate, dropout_p);
  const at::Tensor x = x_in.contiguous();
  at::Tensor out = at::empty_like(x);
  at::Tensor saved = save ? at::empty(saved_shape(kind, form, x, fc1_weight.size(0)), x.options().dtype(compute_dtype(x)))
                          : at::empty({0}, x.options());
  if (x.numel() == 0) return {out, saved};
  run_parallel(
      kind, x, p, eps, approximate, dropout_p, seed, /*backward=*/false, /*saved=*/false,
      [&](auto& a) {
        using T = std::remove_const_t<std::remove_pointer_t<decltype(a.x)>>;
        a.x = data<T>(x);
        a.out = data<T>(out);
        if (save) a.saved = saved.data_ptr<compute_t<T>>();
      },
      [&](const auto& a, const auto& k, int64_t u0, int64_t u1, auto* buf) { k.forward(a, u0, u1, buf); });
  return {out, saved};
}

MixingGrads mixing_backward(MixingKind kind, MixingForm form, const at::Tensor& grad_out, const at::Tensor& x_in,
                            const at::Tensor& ln_weight, const at::Tensor& ln_bias, const at::Tensor& fc1_weight,
                            const at::Tensor& fc1_bias, const at::Tensor& fc2_weight, const at::Tensor& fc2_bias,
                            double eps, c10::string_view approximate, double dropout_p,
                            const std::optional<at::Tensor>& seed, const std::optional<at::Tensor>& saved_in) {
  const Params p{form, ln_weight, ln_bias, fc1_weight, fc1_bias, fc2_weight, fc2_bias};
  check_inputs(kind, x_in, p, approximate, dropout_p);
  TORCH_CHECK(grad_out.sizes() == x_in.sizes() && grad_out.scalar_type() == x_in.scalar_type(),
              "mixerkern.", op_name(kind, form), "_backward: grad_out must match x in shape and dtype, got ",
              shape_str(grad_out.sizes()), " ", grad_out.scalar_type());
  const at::Tensor saved = saved_activations(op_name(kind, form), saved_in, x_in,
                                             [&] { return saved_shape(kind, form, x_in, fc1_weight.size(0)); });
  const bool use_saved = saved.defined();
  const at::Tensor x = x_in.contiguous(), g = grad_out.contiguous();
  at::Tensor dx = at::empty_like(x);
  const int64_t D = x.size(2), H = fc1_weight.size(0), n1 = fc1_weight.numel(), n2 = fc2_weight.numel();
  const int64_t nb2 = fc2_bias.numel();
  // Per-thread partial sums: [ln_w D | ln_b D | w1 | b1 H | w2 | b2].
  const int64_t per_thread = 2 * D + n1 + H + n2 + nb2;
  at::Tensor partials = thread_partials(x, per_thread);
  if (x.numel() > 0) {
    run_parallel(
        kind, x, p, eps, approximate, dropout_p, seed, /*backward=*/true, use_saved,
        [&](auto& a) {
          using T = std::remove_const_t<std::remove_pointer_t<decltype(a.x)>>;
          a.x = data<T>(x);
          a.grad_out = data<T>(g);
          a.out = data<T>(dx);
          if (use_saved) a.saved = saved.data_ptr<compute_t<T>>();
        },
        [&](const auto& a, const auto& k, int64_t u0, int64_t u1, auto* buf) {
          using S = std::remove_pointer_t<decltype(buf)>;
          S* base = partials.data_ptr<S>() + at::get_thread_num() * per_thread;
          const GradPartials<S> gp{base, base + D, base + 2 * D, base + 2 * D + n1, base + 2 * D + n1 + H,
                                   base + 2 * D + n1 + H + n2};
          k.backward(a, u0, u1, buf, gp);
        });
  }
  const at::Tensor total = partials.sum(0);
  auto part = [&](int64_t offset, int64_t n) { return total.narrow(0, offset, n); };
  // Token mixing accumulates dW1 transposed (num_patches x hidden); see token_mixing_kernels.h.
  at::Tensor dw1 = kind == MixingKind::Token ? part(2 * D, n1).view({fc1_weight.size(1), H}).t()
                                             : part(2 * D, n1).view(fc1_weight.sizes());
  auto out = [&](const at::Tensor& t, const at::Tensor& like) { return t.to(like.scalar_type()).contiguous(); };
  return {dx, out(part(0, D), x), out(part(D, D), x), out(dw1, fc1_weight), out(part(2 * D + n1, H), x),
          out(part(2 * D + n1 + H, n2).view(fc2_weight.sizes()), fc2_weight), out(part(2 * D + n1 + H + n2, nb2), x)};
}

namespace {

Params block_half(at::TensorList params, size_t block, MixingKind kind) {  // one block's token or channel params
  const at::Tensor* t = &params[block * kBlockParams + (kind == MixingKind::Token ? 0 : kBlockParams / 2)];
  return Params{MixingForm::Block, t[0], t[1], t[2], t[3], t[4], t[5]};
}

// Checks `params` (kBlockParams per block) against tokens shaped like x; returns the depth.
size_t check_blocks(const char* op, const at::Tensor& x, at::TensorList params, c10::string_view approximate,
                    bool allow_none) {
  TORCH_CHECK((allow_none || !params.empty()) && params.size() % kBlockParams == 0, "mixerkern.", op,
              ": params must hold ", kBlockParams, " tensors per block (token ln_weight, ln_bias, fc1_weight, ",
              "fc1_bias, fc2_weight, fc2_bias, then channel's), got ", params.size());
  const size_t depth = params.size() / kBlockParams;
  for (size_t l = 0; l < depth; ++l)
    for (auto [kind, name] : {std::pair{MixingKind::Token, "token_"}, std::pair{MixingKind::Channel, "channel_"}})
      check_inputs(kind, x, block_half(params, l, kind), approximate, 0.0, op, "block " + std::to_string(l) + " " + name);
  return depth;
}

// Prepares every block's parameters for tokens shaped like x and runs the blocks kernel over a.batch
// images, with stem_scratch more scratch per thread if a.stem is set.
template <class T>
void run_blocks(BlocksArgs<T> a, const at::Tensor& x, at::TensorList params, double eps,
                c10::string_view approximate, size_t stem_scratch) {
  using S = compute_t<T>;
  const size_t depth = params.size() / kBlockParams;
  std::vector<Prepared<T>> tok, chan;
  std::vector<MixingArgs<T>> tok_args, chan_args;
  tok.reserve(depth);
  chan.reserve(depth);
  for (size_t l = 0; l < depth; ++l) {
    tok.emplace_back(MixingKind::Token, true, x, block_half(params, l, MixingKind::Token), eps, approximate, 0.0,
                     std::nullopt);
    chan.emplace_back(MixingKind::Channel, true, x, block_half(params, l, MixingKind::Channel), eps, approximate,
                      0.0, std::nullopt);
    tok_args.push_back(tok[l].args);
    chan_args.push_back(chan[l].args);
    a.token_scratch = std::max(a.token_scratch, round_to_lanes(scratch_elems(MixingKind::Token, tok[l].args, false)));
    a.channel_scratch = std::max(a.channel_scratch, round_to_lanes(scratch_elems(MixingKind::Channel, chan[l].args, false)));
  }
  a.depth = int(depth);
  a.token = tok_args.data();
  a.channel = chan_args.data();
  a.stem_scratch = round_to_lanes(stem_scratch);
  const auto& k = op_kernels_for<T>().blocks;
  parallel_units<S>(a.batch, a.token_scratch + a.channel_scratch + a.stem_scratch + blocks_scratch(a.patches, a.dim),
                    [&](int64_t b0, int64_t b1, S* buf) { k.forward(a, b0, b1, buf); });
}

}  // namespace

at::Tensor mixer_blocks_forward(const at::Tensor& x_in, at::TensorList params, double eps,
                                c10::string_view approximate) {
  check_blocks("mixer_blocks", x_in, params, approximate, false);
  const at::Tensor x = x_in.contiguous();
  at::Tensor out = at::empty_like(x);
  if (x.numel() == 0) return out;
  with_storage_type(x.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    BlocksArgs<T> a;
    a.x = data<T>(x);
    a.out = data<T>(out);
    a.batch = x.size(0);
    a.patches = int(x.size(1));
    a.dim = int(x.size(2));
    run_blocks(a, x, params, eps, approximate, 0);
  });
  return out;
}

at::Tensor mixer_features_forward(const at::Tensor& images_in, const at::Tensor& stem_weight,
                                  const at::Tensor& stem_bias, at::TensorList params,
                                  const std::optional<at::Tensor>& norm_weight,
                                  const std::optional<at::Tensor>& norm_bias, double eps,
                                  c10::string_view approximate) {
  constexpr const char* op = "mixer_features";
  check_patch_inputs(op, images_in, stem_weight, stem_bias, "stem_");
  const int64_t B = images_in.size(0), p = stem_weight.size(2), D = stem_weight.size(0);
  const int64_t P = (images_in.size(2) / p) * (images_in.size(3) / p);
  const at::Tensor tokens = at::empty({0, P, D}, images_in.options());  // the blocks' input shape, for their checks
  check_blocks(op, tokens, params, approximate, true);
  TORCH_CHECK(norm_weight.has_value() == norm_bias.has_value(), "mixerkern.", op,
              ": norm_weight and norm_bias must be given together (the final LayerNorm) or both be None");
  if (norm_weight) {
    check_dtypes_devices(op, images_in, {{"norm_weight", &*norm_weight}, {"norm_bias", &*norm_bias}});
    for (const auto& [name, t] : {std::pair{"norm_weight", &*norm_weight}, std::pair{"norm_bias", &*norm_bias}})
      TORCH_CHECK(t->sizes() == at::IntArrayRef({D}), "mixerkern.", op, ": ", name, " must have shape (", D,
                  ",), got ", shape_str(t->sizes()));
  }
  const at::Tensor images = images_in.contiguous();
  at::Tensor out = at::empty({B, D}, images.options());
  if (out.numel() == 0) return out;
  with_storage_type(images.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    using S = compute_t<T>;
    const auto ct = std::is_same_v<S, double> ? at::kDouble : at::kFloat;
    PreparedPatch<T> stem(true, images, stem_weight, stem_bias);
    at::Tensor nw, nb;
    BlocksArgs<T> a;
    if (norm_weight) {
      nw = norm_weight->to(ct).contiguous();
      nb = norm_bias->to(ct).contiguous();
      a.norm_w = nw.data_ptr<S>();
      a.norm_b = nb.data_ptr<S>();
    }
    a.x = data<T>(images);
    a.out = data<T>(out);
    a.batch = B;
    a.patches = int(P);
    a.dim = int(D);
    a.stem = &stem.args;
    a.pool = true;
    a.eps = S(eps);
    run_blocks(a, tokens, params, eps, approximate, patch_scratch(int(P), stem.args.depth(), int(D), false));
  });
  return out;
}

}}  // namespace mixerkern::cpu
