"""BLAS thread control for the data floor's matrix work (duplicate hashing, the audit's face-space check)."""

from __future__ import annotations


def one_blas_thread():
    """Context: BLAS on one thread. These products are small or tall-and-thin; on a shared 2-core machine
    OpenBLAS threads mostly spin and wait (a 420k x 63 Gram matrix took 3-6 s threaded, 0.1 s on one)."""
    try:
        from threadpoolctl import threadpool_limits

        return threadpool_limits(1, user_api="blas")
    except ImportError:  # threadpoolctl comes with scikit-learn; without it, run as is
        from contextlib import nullcontext

        return nullcontext()
