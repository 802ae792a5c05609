"""Representation analysis: CKA between layers (:mod:`.cka`) and sub-block activations (:mod:`.capture`).

>>> from mixerkern.analysis import capture, cka_matrix
>>> stages = capture(model, images)          # doctest: +SKIP
>>> cka_matrix(stages, kind="linear")         # doctest: +SKIP

``python -m mixerkern.analysis cka|activations --checkpoint RUN_DIR ...`` draws the heatmaps and maps.
"""
from .capture import block_stages, capture, capture_modules, module_names, patch_map, stage_labels
from .cka import (KINDS, MinibatchCKA, center_gram, cka_from_grams, cka_matrix, gram_linear, gram_rbf, hsic,
                  kernel_cka, linear_cka, median_distance)

__all__ = ["KINDS", "MinibatchCKA", "block_stages", "capture", "capture_modules", "center_gram", "cka_from_grams",
           "cka_matrix", "gram_linear", "gram_rbf", "hsic", "kernel_cka", "linear_cka", "median_distance",
           "module_names", "patch_map", "stage_labels"]
