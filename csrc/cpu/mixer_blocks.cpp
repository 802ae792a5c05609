// mixerkern::mixer_blocks on CPU: the forward runs each image through every block's token- and
// channel-mixing kernels (mixing_op.cpp); its backward is composed of the two ops' own
// (mixerkern/ops/mixer_blocks.py).
#include <torch/library.h>

#include "mixing_op.h"

TORCH_LIBRARY_IMPL(mixerkern, CPU, m) { m.impl("mixer_blocks", &mixerkern::cpu::mixer_blocks_forward); }
