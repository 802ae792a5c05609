// mixerkern::mixer_features on CPU: the forward runs each image through the patch embedding, every
// block and the pooling (mixing_op.cpp, mixer_blocks_kernels.h); its backward is composed of the
// ops' own (mixerkern/ops/mixer_features.py).
#include <torch/library.h>

#include "mixing_op.h"

TORCH_LIBRARY_IMPL(mixerkern, CPU, m) { m.impl("mixer_features", &mixerkern::cpu::mixer_features_forward); }
