"""Fisher-vector encoding speed: ``FisherVector.transform`` against a textbook implementation.

The reference computes, image by image, the posteriors with scikit-learn's
``GaussianMixture.predict_proba`` and the gradient with the per-descriptor
formula (broadcasting an ``(n, K, D)`` array), with the same GMM and the same
normalization; :func:`reference_fisher` is also what the tests compare against.

Run ``python -m bench._speed_fisher`` for a quick measurement on synthetic
SIFT-like descriptors.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from classicvision.base import DescriptorSet
from classicvision.encoding import FisherVector

__all__ = ["time_fisher", "reference_fisher"]


def reference_fisher(encoder: FisherVector, descriptor_sets) -> np.ndarray:
    """Fisher vectors of a fitted ``encoder`` (no pyramid), computed the textbook way.

    Parameters
    ----------
    encoder : FisherVector
        Fitted, with ``pyramid=None`` and ``spatial=False``.
    descriptor_sets : list of DescriptorSet

    Returns
    -------
    fv : (n_images, 2 * K * D) ndarray of float64
    """
    if encoder.pyramid is not None or encoder.spatial:
        raise ValueError("the reference implements the global, non-spatial Fisher vector only")
    mu, var, w = encoder.means_, encoder.covariances_, encoder.weights_
    sigma = np.sqrt(var)
    K, D = mu.shape
    out = np.zeros((len(descriptor_sets), 2 * K * D))
    for i, s in enumerate(descriptor_sets):
        X = np.asarray(s.descriptors, np.float64)
        T = X.shape[0]
        if T == 0:
            continue
        gamma = encoder.gmm_.predict_proba(X)  # (T, K)
        u = (X[:, None, :] - mu[None]) / sigma[None]  # (T, K, D)
        g_mu = np.einsum("tk,tkd->kd", gamma, u) / (T * np.sqrt(w)[:, None])
        g_sig = np.einsum("tk,tkd->kd", gamma, u * u - 1.0) / (T * np.sqrt(2 * w)[:, None])
        fv = np.concatenate([g_mu.ravel(), g_sig.ravel()])
        if encoder.improved:
            fv = np.sign(fv) * np.sqrt(np.abs(fv))
            norm = np.linalg.norm(fv)
            fv = fv / norm if norm > 0 else fv
        out[i] = fv
    return out


def time_fisher(descriptor_sets, n_components: int = 64, repeat: int = 3, random_state=0):
    """Time our Fisher-vector transform against the textbook reference.

    The GMM is fitted first (not timed); both sides then encode all
    ``descriptor_sets``. The best of ``repeat`` runs is reported.

    Parameters
    ----------
    descriptor_sets : list of DescriptorSet
    n_components : int
    repeat : int
    random_state : int

    Returns
    -------
    ours_seconds, reference_seconds : float
    """
    enc = FisherVector(n_components=n_components, random_state=random_state).fit(descriptor_sets)
    ours, ref = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        enc.transform(descriptor_sets)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        reference_fisher(enc, descriptor_sets)
        ref.append(time.perf_counter() - t)
    return min(ours), min(ref)


def _synthetic_sets(n_images=50, n_desc=1000, dim=64, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((32, dim)).astype(np.float32)
    sets = []
    for _ in range(n_images):
        lab = rng.integers(0, 32, n_desc)
        X = centers[lab] + 0.5 * rng.standard_normal((n_desc, dim)).astype(np.float32)
        sets.append(DescriptorSet(X, rng.random((n_desc, 2)), np.full(n_desc, 16.0)))
    return sets


if __name__ == "__main__":  # pragma: no cover
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--descriptors", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--components", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    sets = _synthetic_sets(a.images, a.descriptors, a.dim)
    ours, ref = time_fisher(sets, a.components, a.repeat)
    print(f"images={a.images} descriptors/image={a.descriptors} D={a.dim} K={a.components}")
    print(f"ours {ours:.3f} s   reference {ref:.3f} s   speed-up x{ref / ours:.1f}")
