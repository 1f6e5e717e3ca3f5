"""One metrics report for both tracks: top-1, top-5, macro-F1, per-class recall, confusion.

The same :func:`classification_report` scores a classic pipeline's decision values
and a CNN's probabilities, so that ``bench`` compares like with like.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

__all__ = ["ClassificationReport", "classification_report", "top_k_accuracy"]


@dataclass
class ClassificationReport:
    """Scores of one classifier on one test set.

    Attributes
    ----------
    top1 : float
        Accuracy of the highest-scoring class.
    top5 : float or None
        Fraction of samples whose true class is among the 5 highest scores
        (1.0 when there are 5 classes or fewer), ties broken as in
        :func:`sklearn.metrics.top_k_accuracy_score` (see :func:`top_k_accuracy`).
        ``None`` when only hard predictions were given.
    macro_f1 : float
        Unweighted mean of the per-class F1 scores.
    per_class_recall : list of float, length n_classes
        Recall (per-class accuracy) of each class, in ``target_names`` order.
    per_class_precision, per_class_f1 : list of float, length n_classes
    support : list of int, length n_classes
        Number of test samples of each class.
    confusion : list of list of int, shape (n_classes, n_classes)
        ``confusion[i][j]`` counts samples of class ``i`` predicted as ``j``.
    target_names : list of str
    n_samples : int
    mean_class_accuracy : float
        Mean of ``per_class_recall``: the figure most classic-vision papers
        (15-Scene, Caltech-101) report as "accuracy".
    """

    top1: float
    top5: float | None
    macro_f1: float
    per_class_recall: list
    per_class_precision: list
    per_class_f1: list
    support: list
    confusion: list
    target_names: list
    n_samples: int
    mean_class_accuracy: float = field(default=float("nan"))

    def to_dict(self) -> dict:
        """Return a JSON-serializable dict of every field."""
        return asdict(self)

    def __str__(self) -> str:
        top5 = "n/a" if self.top5 is None else f"{self.top5:.4f}"
        lines = [
            f"top-1 {self.top1:.4f}   top-5 {top5}   macro-F1 {self.macro_f1:.4f}   "
            f"mean class accuracy {self.mean_class_accuracy:.4f}   n={self.n_samples}",
            f"{'class':<24}{'recall':>8}{'precision':>11}{'f1':>8}{'support':>9}",
        ]
        for name, r, p, f, s in zip(
            self.target_names, self.per_class_recall, self.per_class_precision,
            self.per_class_f1, self.support,
        ):
            lines.append(f"{str(name):<24}{r:>8.4f}{p:>11.4f}{f:>8.4f}{s:>9d}")
        return "\n".join(lines)


def top_k_accuracy(y_true: np.ndarray, scores: np.ndarray, k: int = 5) -> float:
    """Fraction of rows whose true column index is among the ``k`` largest scores.

    The same number as :func:`sklearn.metrics.top_k_accuracy_score` with
    ``labels=range(n_classes)``, which computes it whenever ``k < n_classes``
    and there are more than two classes.

    Parameters
    ----------
    y_true : (n,) array-like of int
        Column index of each sample's true class.
    scores : (n, n_classes) array-like
    k : int >= 1
        With ``k >= n_classes`` every sample is a hit (the score is 1.0).

    Returns
    -------
    accuracy : float

    Notes
    -----
    Ties are broken as scikit-learn breaks them: classes are ranked by a
    stable sort of their scores, so among classes with equal scores the one
    with the larger column index ranks first. With constant scores over 10
    classes, top-5 is therefore the fraction of samples whose class is one
    of columns 5..9 (0.5 for balanced classes), not 1.0.
    """
    scores = np.asarray(scores, dtype=np.float64)
    y_true = np.asarray(y_true)
    if scores.ndim != 2 or y_true.shape != (scores.shape[0],):
        raise ValueError(
            f"scores must be (n, n_classes) and y_true (n,); got {scores.shape} and {y_true.shape}"
        )
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    n_classes = scores.shape[1]
    k = int(k)
    if k >= n_classes:
        return 1.0
    if n_classes > 2:
        from sklearn.metrics import top_k_accuracy_score

        return float(top_k_accuracy_score(y_true, scores, k=k, labels=np.arange(n_classes)))
    # two columns and k = 1: scikit-learn's binary rule needs 1-D scores, so rank the
    # columns exactly as its multiclass rule does (stable sort, reversed)
    ranked = np.argsort(scores, axis=1, kind="mergesort")[:, ::-1][:, :k]
    return float(np.mean((ranked == y_true[:, None]).any(axis=1)))


def classification_report(
    y_true: Sequence,
    y_score_or_pred,
    target_names: Sequence[str] | None = None,
    *,
    labels: Sequence | None = None,
) -> ClassificationReport:
    """Score predictions or class scores against the true labels.

    Parameters
    ----------
    y_true : (n,) array-like
        True labels. Integers ``0..n_classes-1`` index ``target_names``; other
        labels are matched to ``labels``.
    y_score_or_pred : (n,) array-like or (n, n_classes) array-like
        Either hard predictions (same label space as ``y_true``) or a score per
        class (probabilities, decision values or logits), columns ordered as
        ``labels`` (default ``0..n_classes-1``). With scores, top-1 is the argmax
        and top-5 is computed too.
    target_names : sequence of str, optional
        Display name of each class. Default: ``str(label)``.
    labels : sequence, optional
        The class labels in column order. Default: ``range(len(target_names))``
        when names are given, else the sorted union of labels seen in
        ``y_true`` and the predictions (or ``range(n_classes)`` for scores).

    Returns
    -------
    ClassificationReport

    Raises
    ------
    ValueError
        If lengths differ, the score matrix has the wrong number of columns,
        or a label is outside ``labels``.

    Examples
    --------
    >>> r = classification_report([0, 1, 1], [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], ["cat", "dog"])
    >>> round(r.top1, 3), r.top5, r.confusion
    (0.667, 1.0, [[1, 0], [1, 1]])
    """
    y_true = np.asarray(y_true)
    if y_true.ndim != 1:
        raise ValueError(f"y_true must be 1-D, got shape {y_true.shape}")
    y = np.asarray(y_score_or_pred)
    if y.shape[0] != y_true.shape[0]:
        raise ValueError(
            f"y_true has {y_true.shape[0]} samples but the predictions/scores have {y.shape[0]}"
        )
    if y_true.shape[0] == 0:
        raise ValueError("cannot score an empty test set")
    if y.ndim not in (1, 2):
        raise ValueError(f"predictions must be 1-D or scores 2-D, got shape {y.shape}")

    if labels is None:
        if target_names is not None:
            labels = np.arange(len(target_names))
        elif y.ndim == 2:
            labels = np.arange(y.shape[1])
        else:
            labels = np.unique(np.concatenate([y_true, y]))
    labels = np.asarray(labels)
    n_classes = len(labels)
    if target_names is None:
        target_names = [str(v) for v in labels]
    target_names = [str(v) for v in target_names]
    if len(target_names) != n_classes:
        raise ValueError(f"{len(target_names)} target_names for {n_classes} classes")

    index = {v.item() if hasattr(v, "item") else v: i for i, v in enumerate(labels)}

    def _to_index(values, what):
        try:
            return np.array([index[v.item() if hasattr(v, "item") else v] for v in values], dtype=np.intp)
        except KeyError as exc:
            raise ValueError(f"{what} contains label {exc.args[0]!r}, not one of {list(index)}") from None

    t = _to_index(y_true, "y_true")
    top5 = None
    if y.ndim == 2:
        if y.shape[1] != n_classes:
            raise ValueError(f"scores have {y.shape[1]} columns for {n_classes} classes")
        scores = y.astype(np.float64)
        if not np.all(np.isfinite(scores)):
            raise ValueError("scores contain NaN or infinite values")
        p = scores.argmax(axis=1)
        top5 = top_k_accuracy(t, scores, k=5)
    else:
        p = _to_index(y, "predictions")

    cls = np.arange(n_classes)
    cm = confusion_matrix(t, p, labels=cls)
    prec, rec, f1, support = precision_recall_fscore_support(
        t, p, labels=cls, average=None, zero_division=0
    )
    present = support > 0
    return ClassificationReport(
        top1=float(np.mean(t == p)),
        top5=top5,
        macro_f1=float(np.mean(f1[present])) if present.any() else 0.0,
        per_class_recall=[float(v) for v in rec],
        per_class_precision=[float(v) for v in prec],
        per_class_f1=[float(v) for v in f1],
        support=[int(v) for v in support],
        confusion=cm.astype(int).tolist(),
        target_names=target_names,
        n_samples=int(len(t)),
        mean_class_accuracy=float(np.mean(rec[present])) if present.any() else 0.0,
    )
