"""Transfer learning with CNNClassifier(pretrained=...): a net trained on one synthetic
shape dataset helps on a related one with only 5 training images per class.

Source: four filled shapes (disk, square, cross, triangle) in bright colours on dark
backgrounds, at random positions and sizes, 100 per class. Target: the same shapes in
dimmer colours on lighter backgrounds, 5 per class. With the same small budget, the
net started from the source weights is far more accurate on held-out target images
than one trained from scratch (over seeds 0-7: about 0.95 against 0.35; the test
asserts a margin of 0.3).
"""

import numpy as np
import pytest

from cnn import CNNClassifier

S = 16


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _shapes(n_per_class, rng, fg_range, bg_range):
    """(4 * n_per_class, S, S, 3) uint8 images of 4 shape classes, labels 0..3."""
    yy, xx = np.mgrid[0:S, 0:S]
    images, labels = [], []
    for c in range(4):
        for _ in range(n_per_class):
            cy, cx = rng.uniform(5, S - 5, 2)
            r = rng.uniform(3, 5)
            dy, dx = yy - cy, xx - cx
            if c == 0:
                mask = dy**2 + dx**2 <= r * r
            elif c == 1:
                mask = (abs(dy) <= 0.8 * r) & (abs(dx) <= 0.8 * r)
            elif c == 2:
                mask = ((abs(dy) <= 1) & (abs(dx) <= r)) | ((abs(dx) <= 1) & (abs(dy) <= r))
            else:
                mask = (abs(dy) <= 0.8 * r) & (abs(dx) <= (dy + 0.8 * r) / 2)
            fg, bg = rng.uniform(*fg_range, 3), rng.uniform(*bg_range, 3)
            im = np.where(mask[..., None], fg, bg) + rng.normal(0, 20, (S, S, 3))
            images.append(np.clip(im, 0, 255).astype(np.uint8))
            labels.append(c)
    return np.stack(images), np.array(labels)


def test_pretrained_weights_beat_scratch_on_a_small_related_dataset(tmp_path):
    rng = np.random.default_rng(0)
    Xs, ys = _shapes(100, rng, (150, 255), (0, 80))
    Xt, yt = _shapes(5, rng, (110, 200), (40, 100))
    Xe, ye = _shapes(50, rng, (110, 200), (40, 100))
    kw = dict(model="small_convnet", flip=False, num_threads=1, random_state=0)
    source = CNNClassifier(epochs=6, batch_size=32, **kw).fit(Xs, ys)
    weights = tmp_path / "shapes.pt"
    source.save(weights)

    scratch = CNNClassifier(epochs=15, batch_size=10, **kw).fit(Xt, yt)
    tuned = CNNClassifier(epochs=15, batch_size=10, pretrained=weights, **kw).fit(Xt, yt)
    probe = CNNClassifier(epochs=15, batch_size=10, pretrained=weights, freeze="backbone", **kw).fit(Xt, yt)
    acc_scratch, acc_tuned, acc_probe = (m.score(Xe, ye) for m in (scratch, tuned, probe))
    assert acc_tuned >= acc_scratch + 0.3, (acc_scratch, acc_tuned)
    assert acc_probe >= acc_scratch + 0.2, (acc_scratch, acc_probe)
    assert set(tuned.pretrained_report_["skipped"]) == {"fc.weight", "fc.bias"}
    assert scratch.pretrained_report_ is None
