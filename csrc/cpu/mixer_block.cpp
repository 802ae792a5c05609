// mixerkern::mixer_block on CPU: the forward runs the token- and channel-mixing kernels image by
// image (mixing_op.cpp); its backward is composed of the two ops' own (mixerkern/ops/mixer_block.py).
#include <torch/library.h>

#include "mixing_op.h"

TORCH_LIBRARY_IMPL(mixerkern, CPU, m) { m.impl("mixer_block", &mixerkern::cpu::mixer_block_forward); }
