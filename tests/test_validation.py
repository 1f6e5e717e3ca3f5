"""classicvision.utils.validation: constraints, messages and the fit_context decorator."""

from __future__ import annotations

import os
import re
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import pytest
import sklearn
from sklearn.base import BaseEstimator
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from classicvision.utils.validation import (
    HasMethods,
    Interval,
    InvalidParameterError,
    Options,
    StrOptions,
    check_feature_names_in,
    check_sample_weight,
    fit_context,
    validate_estimator_params,
    validate_parameter_constraints,
)


def _check(constraints, value):
    validate_parameter_constraints({"p": constraints}, {"p": value}, caller_name="Est")


def _message(constraints, value) -> str:
    with pytest.raises(InvalidParameterError) as info:
        _check(constraints, value)
    return str(info.value)


class _Duck:
    """A constraint of another library: anything with is_satisfied_by and a str."""

    def is_satisfied_by(self, val):
        return val == "duck"

    def __str__(self):
        return "a duck"


# (constraints, accepted values, refused values, what the message says they must be)
CASES = [
    ([Interval(Real, 0, None, closed="neither")], [0.5, 3, np.float32(2)], [0, -1, np.nan, "1", None],
     "a float in the range (0.0, inf)"),
    ([Interval(Integral, 1, None, closed="left")], [1, 7, np.int64(3), True], [0, 1.0, 2.5, None],
     "an int in the range [1, inf)"),
    ([Interval(Real, 0, 1, closed="left")], [0, 0.0, 0.99], [1, 1.0, -0.1], "a float in the range [0.0, 1.0)"),
    ([Interval(Real, -1, 1, closed="both")], [-1, 1, 0.0], [1.01, -2], "a float in the range [-1.0, 1.0]"),
    ([Interval(Real, 0, None, closed="right")], [np.inf, 1e9], [0, -np.inf], "a float in the range (0.0, inf]"),
    ([Interval(Integral, None, 5, closed="neither")], [-100, 4], [5, 6], "an int in the range (-inf, 5)"),
    ([StrOptions({"auto"})], ["auto"], ["Auto", "", 1, None], "a str among {'auto'}"),
    ([Options(Integral, {1, 3}), None], [1, 3, np.int64(3), None], [2, 3.0, "1"], "a int among {1, 3} or None"),
    ([HasMethods(["fit", "predict"])], [LinearSVC, LinearSVC()], [object(), "fit"],
     "an object implementing 'fit' and 'predict'"),
    ([HasMethods("transform"), None], [None, StandardScaler()], [1],
     "an object implementing 'transform' or None"),
    (["boolean"], [True, False, np.bool_(True)], [0, 1, "True", None],
     "an instance of 'bool' or an instance of 'numpy.bool'"),
    (["verbose"], [0, 3, True], [-1, 0.5, None],
     "an int in the range [0, inf), an instance of 'bool' or an instance of 'numpy.bool'"),
    (["random_state"], [None, 0, 2**32 - 1, np.random.RandomState(0)], [-1, 2**32, 0.5, np.random.default_rng(0)],
     "an int in the range [0, 4294967295], an instance of 'numpy.random.mtrand.RandomState' or None"),
    ([str, os.PathLike, None], ["a", Path("a"), None], [1, b"a"],
     "an instance of 'str', an instance of 'os.PathLike' or None"),
    ([Integral, None], [1, np.int32(1), None], [1.0], "an instance of 'int' or None"),
    ([dict, StrOptions({"balanced"}), None], [{}, "balanced", None], ["auto", []],
     "an instance of 'dict', a str among {'balanced'} or None"),
    ([StrOptions({"x"}), callable], ["x", len, lambda v: v], ["y", 1], "a str among {'x'} or a callable"),
    ([_Duck(), None], ["duck", None], ["goose"], "a duck or None"),
]


@pytest.mark.parametrize("constraints, good, bad, must", CASES, ids=[c[3][:40] for c in CASES])
def test_each_constraint_kind_accepts_and_refuses(constraints, good, bad, must):
    for value in good:
        _check(constraints, value)
    for value in bad:
        assert _message(constraints, value) == f"The 'p' parameter of Est must be {must}. Got {value!r} instead."


def test_the_error_is_a_value_and_a_type_error():
    assert issubclass(InvalidParameterError, ValueError) and issubclass(InvalidParameterError, TypeError)
    with pytest.raises(ValueError, match=r"The 'C' parameter of LinearSVM must be a float in the range \(0\.0, inf\)"):
        validate_parameter_constraints(
            {"C": [Interval(Real, 0, None, closed="neither")]}, {"C": -1.0}, caller_name="LinearSVM"
        )


def test_unconstrained_no_validation_and_unknown_constraints():
    validate_parameter_constraints({"a": "no_validation"}, {"a": object(), "b": object()}, caller_name="Est")
    with pytest.raises(ValueError, match="Unknown constraint type: bogus"):
        _check(["bogus"], 1)
    with pytest.raises(ValueError, match="Unknown constraint type: 3"):
        _check([3], 1)
    # the first invalid parameter is named; the others are not looked at
    with pytest.raises(InvalidParameterError, match="'a' parameter"):
        validate_parameter_constraints({"a": [None], "b": [None]}, {"a": 1, "b": 2}, caller_name="Est")


def test_interval_refuses_bad_definitions():
    with pytest.raises(ValueError, match="type must be"):
        Interval(float, 0, 1, closed="both")
    with pytest.raises(ValueError, match="closed must be"):
        Interval(Real, 0, 1, closed="open")
    with pytest.raises(TypeError, match="Expecting left to be an int"):
        Interval(Integral, 0.5, None, closed="left")
    with pytest.raises(TypeError, match="Expecting right to be a real number"):
        Interval(Real, 0, "1", closed="left")
    with pytest.raises(ValueError, match="left can't be None when closed == both"):
        Interval(Integral, None, 1, closed="both")
    with pytest.raises(ValueError, match="right can't be less than left"):
        Interval(Real, 1, 1, closed="neither")
    with pytest.raises(TypeError, match="methods must be"):
        HasMethods(["fit", 1])
    assert 5 in Interval(Real, 0, None, closed="left") and np.nan not in Interval(Real, None, None, closed="neither")


class _Model(BaseEstimator):
    _parameter_constraints = {
        "k": [Interval(Integral, 1, None, closed="left")],
        "inner": [HasMethods("fit"), None],
    }

    def __init__(self, k=1, inner=None):
        self.k = k
        self.inner = inner

    def _fit(self, X):
        self.skipping_ = sklearn.get_config()["skip_parameter_validation"]
        if self.inner is not None:
            self.inner.fit(X)
        return self

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X=None, y=None):
        """Fit the model."""
        return self._fit(X)

    @fit_context(prefer_skip_nested_validation=False)
    def fit_outer(self, X=None):
        return self._fit(X)

    @fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X=None):
        self.calls_ = getattr(self, "calls_", 0) + 1
        return self


def test_fit_context_validates_before_fit():
    m = _Model(k=0)
    with pytest.raises(InvalidParameterError, match=r"The 'k' parameter of _Model must be an int in the range \[1, inf\)\. Got 0 instead\."):
        m.fit()
    assert not hasattr(m, "skipping_")  # fit did not run
    assert _Model(k=2).fit().skipping_ is True  # nested validation is off inside fit ...
    assert sklearn.get_config()["skip_parameter_validation"] is False  # ... and back on after it
    assert _Model.fit.__name__ == "fit" and _Model.fit.__doc__ == "Fit the model."


def test_fit_context_nested_validation():
    # prefer_skip_nested_validation=True: an inner estimator of ours is not checked again
    assert _Model(inner=_Model(k=0)).fit().skipping_ is True
    # False: the inner estimator (given by the user) validates its own parameters
    with pytest.raises(InvalidParameterError, match="'k' parameter of _Model"):
        _Model(inner=_Model(k=0)).fit_outer()
    outer = _Model(inner=_Model(k=1)).fit_outer()
    assert outer.skipping_ is False and outer.inner.skipping_ is True
    # scikit-learn's own switch turns validation off, as for its estimators
    with sklearn.config_context(skip_parameter_validation=True):
        assert _Model(k=0).fit().skipping_ is True


def test_fit_context_partial_fit_validates_once():
    m = _Model(k=1).partial_fit()
    m.k = 0  # not checked again once fitted (as scikit-learn does for partial_fit)
    assert m.partial_fit().calls_ == 2
    with pytest.raises(InvalidParameterError):
        _Model(k=0).partial_fit()
    with pytest.raises(InvalidParameterError, match="'inner' parameter of _Model must be an object implementing 'fit' or None"):
        validate_estimator_params(_Model(inner=3))


def test_check_feature_names_in():
    est = BaseEstimator()
    with pytest.raises(ValueError, match="Unable to generate feature names without n_features_in_"):
        check_feature_names_in(est)
    assert check_feature_names_in(est, generate_names=False) is None
    est.n_features_in_ = 3
    names = check_feature_names_in(est)
    assert names.dtype == object and list(names) == ["x0", "x1", "x2"]
    assert list(check_feature_names_in(est, ["a", "b", "c"])) == ["a", "b", "c"]
    with pytest.raises(ValueError, match=re.escape("input_features should have length equal to number of features (3), got 2")):
        check_feature_names_in(est, ["a", "b"])
    est.feature_names_in_ = np.asarray(["u", "v", "w"], dtype=object)
    assert list(check_feature_names_in(est)) == ["u", "v", "w"]
    with pytest.raises(ValueError, match="input_features is not equal to feature_names_in_"):
        check_feature_names_in(est, ["a", "b", "c"])


def test_check_sample_weight():
    assert check_sample_weight(2.0, 3).tolist() == [2.0, 2.0, 2.0]
    w = check_sample_weight([1, 2, 3], 3)
    assert w.dtype == np.float64 and w.flags.c_contiguous
    assert check_sample_weight(np.ones(3, np.float32), 3).dtype == np.float32
    assert check_sample_weight([1, 2], 2, dtype=np.float32).dtype == np.float32
    assert check_sample_weight([1, 2], 2, dtype=np.int64).dtype == np.float64
    with pytest.raises(ValueError, match=re.escape("sample_weight.shape == (2,), expected (3,)!")):
        check_sample_weight([1, 2], 3)
    with pytest.raises(ValueError, match="Sample weights must be 1D array or scalar, got 2D array"):
        check_sample_weight(np.ones((3, 1)), 3)
    with pytest.raises(ValueError):
        check_sample_weight([1, np.nan, 2], 3)
