"""Triton kernels and their launchers (GPU). Nothing here is imported by ``import mixerkern``:
CPU-only users need neither triton nor a GPU, and no device is touched at import.

Tests run every kernel under the Triton interpreter (``TRITON_INTERPRET=1``) on CPU tensors;
see tests/triton/.
"""
