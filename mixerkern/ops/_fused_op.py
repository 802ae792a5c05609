"""Shared torch.library machinery for mixerkern's fused ops.

Every fused op takes one activation tensor ``x``, a few parameter tensors, and a tail of settings:
``eps`` for ops with a LayerNorm inside, then for ops with a GELU and dropout inside,
``approximate``, ``dropout_p`` and a dropout ``seed``; its backward returns the gradient of x and
of every parameter. One :class:`FusedOp` definition therefore gives each op
its schema, fake (meta) kernel, autograd formula, functional entry point and, when the compiled
kernels are missing, a reference CPU kernel. The device kernels live in csrc/cpu/ (C++) and mixerkern/triton/<op>.py (the CUDA kernels, in Triton).
"""
from __future__ import annotations

import functools
import importlib
import warnings
from typing import Callable

import torch

from . import _dropout

LIB = torch.library.Library("mixerkern", "FRAGMENT")

# Per device: the C++ kernels compute in fp32/fp64, the Triton ones on tensor cores (fp16, no fp64).
SUPPORTED_DTYPES = {"cpu": (torch.float32, torch.bfloat16, torch.float64),
                    "cuda": (torch.float32, torch.bfloat16, torch.float16)}
_EPS_SETTING = "float eps"
_ACTIVATION_SETTINGS = "str approximate, float dropout_p, Tensor? seed"
# The parameters of the LN -> fc1 -> GELU -> fc2 ops (token and channel mixing).
MLP_PARAMS = ("ln_weight", "ln_bias", "fc1_weight", "fc1_bias", "fc2_weight", "fc2_bias")


class FusedOp:
    """Defines ``mixerkern::<name>(x, *params[, eps][, approximate, dropout_p, seed])`` and its backward.

    ``expected_shapes(x_shape, param_shapes)`` returns the shape each parameter must have (a dict
    keyed by parameter name), or raises ValueError when x itself cannot be valid; ``output_shape``
    maps x's shape and that dict of parameter shapes to the output's. ``x_dims``: x's rank.
    ``x_grad_optional``: the backward takes a trailing ``bool x_grad`` and, when it is false, skips
    the gradient of x (returned as an empty tensor); autograd passes whether x needs one. For ops
    whose x is usually a leaf without gradient (images into the patch embedding), where dx would
    cost a GEMM as large as the forward's. ``normalized`` says whether the op has a LayerNorm (and so an
    ``eps``), ``activation`` whether it has a GELU and dropout (and so the settings for them).
    ``autocast``: whether autocast runs the op in its lower precision, as it does Linear.
    ``autocast_weights``: for an op that autocast keeps in x's precision, the GEMM weights that it
    casts instead, as autocast casts a Linear's weight: the compiled CPU kernels then take bf16
    GEMM operands with fp32 x, while the residual and LayerNorm stay fp32. Those parameters may be
    bfloat16 with float32 x in any call.
    ``reference`` is the plain-PyTorch math (mixerkern.reference.functional), called as
    ``reference(x, *params, **op.reference_kwargs(...))``.

    ``saved_shape(x_shape, param_shapes)`` gives the shape of the activations a training step's
    forward saves so that the backward need not recompute them (with GEMMs, or an FFT); the
    parameter shapes come as a dict keyed by parameter name. Such an op also
    gets ``<name>_train``, the same forward returning ``(out, saved)``, which the functional entry
    point calls whenever autograd records; its backward passes ``saved`` on to ``<name>_backward``.
    The C++ kernels save the activations in fp32 (fp64 for fp64 x); the CUDA kernels and the
    reference fallback return an empty ``saved``, which tells the backward to recompute.
    """

    def __init__(self, name: str, param_names: tuple[str, ...], reference: Callable, expected_shapes: Callable,
                 layout: str, output_shape: Callable = lambda x_shape, shapes: x_shape, activation: bool = True,
                 normalized: bool = True, autocast: bool = True, saved_shape: Callable | None = None,
                 x_dims: int = 3, cuda: str = "triton", x_grad_optional: bool = False,
                 autocast_weights: tuple[str, ...] = ()):
        self.name, self.param_names, self.reference = name, param_names, reference
        self.autocast_weights = autocast_weights
        self.expected_shapes, self.output_shape, self.activation = expected_shapes, output_shape, activation
        self.normalized, self.autocast, self.saved_shape = normalized, autocast, saved_shape
        self.layout = layout  # human-readable layout of x and the weights, for error messages
        self.x_dims, self.x_grad_optional = x_dims, x_grad_optional
        self.cuda = cuda  # the CUDA kernels: "triton" (mixerkern/triton/<name>.py) or "reference" (torch's own)
        self._fallback = False  # the reference CPU kernels are registered (they save nothing)
        settings = [_EPS_SETTING] * normalized + [_ACTIVATION_SETTINGS] * activation
        self.num_scalars = normalized + 2 * activation  # settings before the seed tensor
        args = ", ".join(["Tensor x", *("Tensor " + p for p in param_names), *settings])
        grads = ", ".join(["Tensor"] * (1 + len(param_names)))
        saved_arg = ", Tensor? saved=None" if saved_shape else ""
        LIB.define(f"{name}({args}) -> Tensor")
        x_grad_arg = ", bool x_grad=True" if x_grad_optional else ""
        assert not (saved_shape and x_grad_optional), "the flag would follow `saved`: not supported"
        LIB.define(f"{name}_backward(Tensor grad_out, {args}{saved_arg}{x_grad_arg}) -> ({grads})")
        self.forward_op = getattr(torch.ops.mixerkern, name).default
        self.backward_op = getattr(torch.ops.mixerkern, f"{name}_backward").default
        torch.library.register_fake(f"mixerkern::{name}", self._fake_forward, lib=LIB)
        torch.library.register_fake(f"mixerkern::{name}_backward", self._fake_backward, lib=LIB)
        torch.library.register_autograd(f"mixerkern::{name}", self._backward,
                                        setup_context=self._setup_context, lib=LIB)
        self.train_op = None
        if saved_shape:
            LIB.define(f"{name}_train({args}) -> (Tensor, Tensor)")
            self.train_op = getattr(torch.ops.mixerkern, f"{name}_train").default
            torch.library.register_fake(f"mixerkern::{name}_train", self._fake_train, lib=LIB)
            torch.library.register_autograd(f"mixerkern::{name}_train", self._backward,
                                            setup_context=self._setup_context, lib=LIB)

    # ---- argument checks (the C++ kernels repeat them with TORCH_CHECK) -------------------------
    def check(self, x, params, approximate="none", dropout_p=0.0):
        where = f"mixerkern.{self.name}"
        if x.dim() != self.x_dims:
            raise ValueError(f"{where}: x must be {self.x_dims}-D {self.layout}, got shape {tuple(x.shape)}")
        tensors = dict(x=x, **dict(zip(self.param_names, params)))
        supported = SUPPORTED_DTYPES.get(x.device.type, SUPPORTED_DTYPES["cpu"] + SUPPORTED_DTYPES["cuda"])
        names = ", ".join(str(d).removeprefix("torch.") for d in supported[:-1]) + " or " + \
            str(supported[-1]).removeprefix("torch.")
        for arg, t in tensors.items():
            if t.dtype not in supported:
                raise TypeError(f"{where}: {arg} must be {names} on {x.device.type}, got {t.dtype}")
            if t.dtype != x.dtype and not self._bf16_weights(x, tensors):
                raise TypeError(f"{where}: {arg} has dtype {t.dtype} but x has {x.dtype}; all must match"
                                + (f" (or {' and '.join(self.autocast_weights)} are bfloat16 with float32 x)"
                                   if self.autocast_weights else ""))
            if t.device != x.device:
                raise ValueError(f"{where}: {arg} is on {t.device} but x is on {x.device}; all must match")
        shapes = {arg: tuple(t.shape) for arg, t in zip(self.param_names, params)}
        try:
            expected = self.expected_shapes(tuple(x.shape), shapes)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        for arg, t in zip(self.param_names, params):
            if tuple(t.shape) != expected[arg]:
                raise ValueError(f"{where}: {arg} must have shape {expected[arg]} for {self.layout} "
                                 f"with x of shape {tuple(x.shape)}, got {tuple(t.shape)}")
        if approximate not in ("none", "tanh"):
            raise ValueError(f"{where}: approximate must be 'none' or 'tanh', got {approximate!r}")
        if not 0.0 <= dropout_p < 1.0:
            raise ValueError(f"{where}: dropout_p must be in [0, 1), got {dropout_p}")

    def _bf16_weights(self, x, tensors: dict) -> bool:
        """Whether the call is the mixed form (see autocast_weights): fp32 x on the CPU, exactly the
        autocast_weights in bf16, everything else fp32."""
        return (bool(self.autocast_weights) and x.dtype == torch.float32 and x.device.type == "cpu"
                and all(t.dtype == (torch.bfloat16 if arg in self.autocast_weights else x.dtype)
                        for arg, t in tensors.items() if arg != "x"))

    def param_shapes(self, params) -> dict:
        """{parameter name: shape} of params (in the op's parameter order)."""
        return {n: tuple(p.shape) for n, p in zip(self.param_names, params)}

    def out_shape(self, x, params) -> tuple:
        """The shape of the op's output for input x and parameters params."""
        return tuple(self.output_shape(tuple(x.shape), self.param_shapes(params)))

    def settings(self, eps=1e-6, approximate="none", dropout_p=0.0, seed=None) -> tuple:
        """The positional settings of ``forward_op`` after x and the parameters."""
        return (eps,) * self.normalized + (approximate, dropout_p, seed) * self.activation

    def reference_kwargs(self, eps=1e-6, approximate="none", mask=None) -> dict:
        """The keyword settings of ``reference`` (the same ones, by name)."""
        return {**({"eps": eps} if self.normalized else {}),
                **({"approximate": approximate, "mask": mask} if self.activation else {})}

    def _split(self, rest):
        """(*params[, eps][, approximate, dropout_p, seed]) -> params, (eps, approximate, dropout_p, seed)."""
        n = len(self.param_names)
        settings = list(rest[n:])
        eps = settings.pop(0) if self.normalized else None
        approximate, dropout_p, seed = settings if self.activation else ("none", 0.0, None)
        return rest[:n], (eps, approximate, dropout_p, seed)

    def _fake_forward(self, x, *rest):
        params, (eps, approximate, dropout_p, seed) = self._split(rest)
        self.check(x, params, approximate, dropout_p)
        return x.new_empty(self.out_shape(x, params))

    def _fake_train(self, x, *rest):
        out = self._fake_forward(x, *rest)
        if x.device.type != "cpu" or self._fallback:
            return out, x.new_empty(0)
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        params, _ = self._split(rest)
        return out, x.new_empty(self.saved_shape(tuple(x.shape), self.param_shapes(params)), dtype=dtype)

    def _x_grad_flag(self, rest) -> bool:
        """The backward's trailing x_grad flag (True when the op has none or it is omitted)."""
        n = len(self.param_names) + self.num_scalars + self.activation  # params, settings, seed
        return bool(rest[n]) if self.x_grad_optional and len(rest) > n else True

    def _fake_backward(self, grad_out, x, *rest):
        params = rest[:len(self.param_names)]
        dx = torch.empty_like(x, memory_format=torch.contiguous_format) if self._x_grad_flag(rest) else x.new_empty(0)
        return (dx, *(torch.empty_like(p) for p in params))

    # ---- autograd: the backward kernel recomputes LN (and GELU from its saved input, if the
    # training forward saved it) and regenerates the dropout mask --------------------------------
    def _setup_context(self, ctx, inputs, output):
        n = 1 + len(self.param_names)
        extra = inputs[n + self.num_scalars:]  # the dropout seed, if any
        if isinstance(output, tuple):  # <name>_train: (out, saved activations)
            ctx.mark_non_differentiable(output[1])
            # Else autograd hands the backward a zero-filled grad for `saved` (a memset as large as the
            # activations, 2 per step: ~0.27 ms of a 4.5 ms channel_mlp step at the benchmark shapes).
            ctx.set_materialize_grads(False)
            extra = (*extra, output[1])
        ctx.save_for_backward(*inputs[:n], *extra)
        ctx.scalars = inputs[n:n + self.num_scalars]  # [eps][, approximate, dropout_p]
        ctx.num_inputs = len(inputs)

    def _backward(self, ctx, grad_out, *_grad_saved):
        n = 1 + len(self.param_names)
        if grad_out is None:  # unmaterialized (see _setup_context): nothing flows back from `out`
            return (None,) * ctx.num_inputs
        saved = ctx.saved_tensors
        flag = (ctx.needs_input_grad[0],) if self.x_grad_optional else ()
        grads = self.backward_op(grad_out.contiguous(), *saved[:n], *ctx.scalars, *saved[n:], *flag)
        dx = grads[0] if ctx.needs_input_grad[0] or not self.x_grad_optional else None
        return (dx, *grads[1:], *[None] * (ctx.num_inputs - n))

    # ---- reference kernels, used only when the compiled CPU kernels could not be loaded ----------
    def _reference_forward(self, x, *rest):
        params, (eps, approximate, dropout_p, seed) = self._split(rest)
        self.check(x, params, approximate, dropout_p)
        mask = _dropout.dropout_mask(seed, x.shape, dropout_p, x.dtype) if dropout_p > 0 else None
        return self.reference(x, *params, **self.reference_kwargs(eps, approximate, mask))

    def _reference_backward(self, grad_out, x, *rest):
        n, x_grad = len(self.param_names), self._x_grad_flag(rest)
        rest = rest[:n + self.num_scalars + self.activation]
        inputs = [t.detach().requires_grad_() for t in (x, *rest[:n])]
        with torch.enable_grad():
            out = self._reference_forward(*inputs, *rest[n:])
        grads = torch.autograd.grad(out, inputs, grad_out)
        return grads if x_grad else (x.new_empty(0), *grads[1:])

    def _kernels_saving_nothing(self, forward: Callable, backward: Callable) -> dict:
        """{op name: kernel} for devices whose kernels recompute: <name>_train returns an empty saved."""
        kernels = {self.name: forward, f"{self.name}_backward": backward}
        if self.saved_shape:
            kernels[f"{self.name}_train"] = lambda x, *rest: (forward(x, *rest), x.new_empty(0))
            kernels[f"{self.name}_backward"] = lambda *args: backward(*args[:-1])
        return kernels

    def register_reference_cpu_kernels(self, reason: str):
        def warned(fn):
            def kernel(*args):
                warn_fallback_once(reason)
                return fn(*args)
            return kernel
        self._fallback = True
        for name, kernel in self._kernels_saving_nothing(self._reference_forward, self._reference_backward).items():
            LIB.impl(name, warned(kernel), "CPU")

    # ---- CUDA kernels: Triton, imported at the first call on a CUDA tensor -------------------------
    def register_cuda_kernels(self):
        """Registering touches no GPU and imports no triton: both wait for the first CUDA call."""
        if self.cuda == "reference":
            for name, kernel in self._kernels_saving_nothing(self._reference_forward, self._reference_backward).items():
                LIB.impl(name, kernel, "CUDA")
            return
        def kernel(entry):
            def run(*args):
                kernels = _triton_kernels(self.name)
                return getattr(kernels, entry)(*(a.contiguous() if isinstance(a, torch.Tensor) else a for a in args))
            return run
        for name, fn in self._kernels_saving_nothing(kernel("forward"), kernel("backward")).items():
            LIB.impl(name, fn, "CUDA")

    # ---- functional entry point -------------------------------------------------------------------
    def __call__(self, x, *params, eps: float | None = None, approximate: str = "none", dropout_p: float = 0.0):
        if len(params) != len(self.param_names):
            raise TypeError(f"mixerkern.{self.name}: expected x and {len(self.param_names)} parameters "
                            f"({', '.join(self.param_names)}), got {len(params)} parameters")
        if not self.activation and (approximate != "none" or dropout_p != 0.0):
            raise TypeError(f"mixerkern.{self.name} has no GELU or dropout: approximate and dropout_p "
                            "do not apply")
        if not self.normalized and eps is not None:
            raise TypeError(f"mixerkern.{self.name} has no LayerNorm: eps does not apply")
        if self.autocast and x.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(x.device.type):
            # Mirror autocast's treatment of Linear: run the whole fused op in the autocast dtype.
            dtype = torch.get_autocast_dtype(x.device.type)
            x, params = x.to(dtype), tuple(p.to(dtype) for p in params)
        elif (self.autocast_weights and x.device.type == "cpu" and x.dtype == torch.float32 and not self._fallback
              and torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16):
            params = tuple(p.to(torch.bfloat16) if n in self.autocast_weights else p
                           for n, p in zip(self.param_names, params))
        self.check(x, params, approximate, dropout_p)  # clear errors before dispatch picks a device
        seed = _dropout.draw_seed() if self.activation and dropout_p > 0 else None
        eps = 1e-6 if eps is None else float(eps)
        settings = self.settings(eps, approximate, float(dropout_p), seed)
        if self.train_op is not None and torch.is_grad_enabled() and any(t.requires_grad for t in (x, *params)):
            return self.train_op(x, *params, *settings)[0]
        return self.forward_op(x, *params, *settings)


@functools.lru_cache(maxsize=None)
def _triton_kernels(name: str):
    try:
        return importlib.import_module(f"mixerkern.triton.{name}")
    except ImportError as exc:
        raise RuntimeError(f"mixerkern.{name} on CUDA tensors runs Triton kernels, which could not be imported "
                           f"({exc}); install them with `pip install mixerkern[gpu]`") from exc


@functools.lru_cache(maxsize=None)
def warn_fallback_once(reason: str) -> None:
    warnings.warn(f"mixerkern: compiled CPU kernels unavailable ({reason}); the fused ops fall back "
                  "to the (slow) reference math. Run `python -m mixerkern.build` to see the build error.",
                  RuntimeWarning, stacklevel=3)
