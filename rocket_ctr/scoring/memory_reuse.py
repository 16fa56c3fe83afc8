"""Reuse TensorFlow's freed CPU buffers: streaming jobs stop paying a page fault per page.

Batch scoring allocates and frees the same MB-sized intermediates thousands of times. TensorFlow's
default CPU allocator hands them to malloc, which maps large blocks afresh and returns them on
free, so every batch's buffers arrive as new zeroed pages: with ``rocket-ctr predict`` on 2 cores
the kernel's page-fault handling took 43 % of the CPU samples (``perf``) and 17 of 41 CPU seconds
were system time. TensorFlow's BFC allocator (``TF_CPU_ALLOCATOR_USE_BFC``) keeps freed chunks in
a pool that grows to the peak in use and reuses them: system time fell to ~5 s. Glibc's
``mallopt`` trim and mmap thresholds did not help here (measured).
"""
from __future__ import annotations

import os

BFC_FLAG = "TF_CPU_ALLOCATOR_USE_BFC"


def reuse_cpu_buffers() -> None:
    """Makes TensorFlow's CPU allocator a reusing pool (BFC), unless ``TF_CPU_ALLOCATOR_USE_BFC``
    is set already. TensorFlow reads the flag when it creates its CPU allocator, on the first
    tensor: call this before any TensorFlow work (importing it is fine)."""
    os.environ.setdefault(BFC_FLAG, "true")
