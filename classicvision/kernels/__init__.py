"""Additive kernels, explicit kernel maps and kernel / linear SVMs."""

from ._additive import chi2_kernel, hellinger_kernel, intersection_kernel
from ._linear import LinearSVM
from ._maps import HomogeneousKernelMap, NystroemMap, PowerNormalizer, kernel_spectrum
from ._svc import KernelSVC, clear_kernel_cache

__all__ = [
    "intersection_kernel",
    "chi2_kernel",
    "hellinger_kernel",
    "kernel_spectrum",
    "HomogeneousKernelMap",
    "PowerNormalizer",
    "NystroemMap",
    "KernelSVC",
    "LinearSVM",
    "clear_kernel_cache",
]
