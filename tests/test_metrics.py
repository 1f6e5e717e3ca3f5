import json

import numpy as np
import pytest
from sklearn.metrics import f1_score, top_k_accuracy_score

from classicvision.metrics import classification_report, top_k_accuracy


def test_report_from_scores_matches_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, size=300)
    scores = rng.normal(size=(300, 10))
    scores[np.arange(300), y] += 1.5
    r = classification_report(y, scores, [f"c{i}" for i in range(10)])
    pred = scores.argmax(1)
    assert r.top1 == pytest.approx(np.mean(pred == y))
    assert r.top5 == pytest.approx(top_k_accuracy_score(y, scores, k=5, labels=np.arange(10)))
    assert r.macro_f1 == pytest.approx(f1_score(y, pred, average="macro"))
    assert np.asarray(r.confusion).sum() == 300
    assert np.trace(np.asarray(r.confusion)) == int(np.sum(pred == y))
    recall = [np.mean(pred[y == c] == c) for c in range(10)]
    np.testing.assert_allclose(r.per_class_recall, recall)
    assert r.mean_class_accuracy == pytest.approx(np.mean(recall))
    json.dumps(r.to_dict())  # serializable


def test_report_from_labels_has_no_top5():
    r = classification_report([0, 1, 2, 2], [0, 2, 2, 2], ["a", "b", "c"])
    assert r.top5 is None
    assert r.top1 == 0.75
    assert r.confusion == [[1, 0, 0], [0, 0, 1], [0, 0, 2]]
    assert r.per_class_recall == [1.0, 0.0, 1.0]
    assert "a" in str(r)


def test_string_labels_and_explicit_label_order():
    r = classification_report(["cat", "dog"], ["dog", "dog"], labels=["cat", "dog"])
    assert r.target_names == ["cat", "dog"]
    assert r.confusion == [[0, 1], [0, 1]]


def test_top5_with_few_classes_and_ties():
    assert top_k_accuracy([0, 1], [[0.1, 0.9], [0.5, 0.5]], k=5) == 1.0
    # true class tied with three higher-scoring classes at k=2: counted wrong
    assert top_k_accuracy([0], [[0.5, 0.9, 0.9, 0.9]], k=2) == 0.0


def test_bad_input_errors():
    with pytest.raises(ValueError, match="3 samples but"):
        classification_report([0, 1, 0], [0, 1])
    with pytest.raises(ValueError, match="columns"):
        classification_report([0, 1], np.zeros((2, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="label 7"):
        classification_report([0, 7], [0, 1], ["a", "b"])
    with pytest.raises(ValueError, match="NaN"):
        classification_report([0, 1], [[np.nan, 1], [0, 1]])
    with pytest.raises(ValueError, match="empty"):
        classification_report([], [])


def test_top5_breaks_ties_like_sklearn():
    # constant scores: every class ties; sklearn ranks the larger column index first
    y = np.arange(200) % 10
    const = np.zeros((200, 10))
    assert top_k_accuracy(y, const, k=5) == pytest.approx(0.5)
    assert top_k_accuracy(y, const, k=5) == top_k_accuracy_score(y, const, k=5, labels=np.arange(10))
    assert classification_report(y, const).top5 == pytest.approx(0.5)
    # random scores with many ties (few distinct values), several k
    rng = np.random.default_rng(1)
    yr = rng.integers(0, 8, size=500)
    scores = rng.integers(0, 3, size=(500, 8)).astype(float)
    for k in (1, 2, 3, 5, 7):
        assert top_k_accuracy(yr, scores, k=k) == pytest.approx(
            top_k_accuracy_score(yr, scores, k=k, labels=np.arange(8))
        ), k


def test_top5_with_five_classes_or_fewer_is_perfect_and_k_is_checked():
    rng = np.random.default_rng(2)
    for n_classes in (2, 3, 5):
        y = rng.integers(0, n_classes, size=50)
        scores = rng.normal(size=(50, n_classes))
        assert top_k_accuracy(y, scores, k=5) == 1.0
        assert classification_report(y, scores, labels=np.arange(n_classes)).top5 == 1.0
    # two classes, k = 1: a tie ranks column 1 first, as sklearn's ranking does
    assert top_k_accuracy([0, 1], [[0.5, 0.5], [0.5, 0.5]], k=1) == 0.5
    assert top_k_accuracy([0, 1], [[0.9, 0.1], [0.2, 0.8]], k=1) == 1.0
    with pytest.raises(ValueError, match="k must be >= 1"):
        top_k_accuracy([0], [[0.1, 0.9]], k=0)
