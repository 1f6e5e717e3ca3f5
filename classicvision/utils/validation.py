"""Parameter validation for the estimators of classicvision and cnn.

scikit-learn validates an estimator's constructor parameters against a class
attribute ``_parameter_constraints`` (``{name: [constraint, ...]}``) with
classes of its private ``sklearn.utils._param_validation`` module, and runs
``fit`` inside its private ``sklearn.base._fit_context``. This module is the
public equivalent the library's estimators use, with the same conventions and
the same error messages (``The 'C' parameter of LinearSVM must be a float in
the range (0.0, inf). Got -1 instead.``), so that no estimator depends on
scikit-learn's internals.

A parameter is valid when it satisfies one of the constraints of its list;
a constraint is one of:

* an :class:`Interval` (a typed range of numbers), :class:`StrOptions`
  (a set of strings), :class:`Options` (a set of values of one type) or
  :class:`HasMethods` (an object with the named methods);
* a type (any instance of it is valid; ``numbers.Real``, ``os.PathLike`` and
  other abstract base classes work too), or ``None`` (the value None);
* the strings ``"boolean"`` (bool or ``numpy.bool_``), ``"verbose"`` (an int
  >= 0 or a boolean) and ``"random_state"`` (an int in ``[0, 2**32 - 1]``, a
  ``numpy.random.RandomState`` or None), or the builtin :func:`callable`;
* any other object with an ``is_satisfied_by(value)`` method and a ``str``
  (e.g. a constraint inherited from a scikit-learn parent class).

A parameter whose constraint list is the string ``"no_validation"``, or that
has no entry, is not checked.

=====================================  ==========================================
:func:`validate_parameter_constraints`  check a dict of parameters
:func:`validate_estimator_params`       check an estimator's ``get_params()``
:func:`fit_context`                     decorator of ``fit``: validate, then fit
:class:`InvalidParameterError`          the error (a ValueError and a TypeError)
:func:`check_feature_names_in`          ``input_features`` of
                                        ``get_feature_names_out``
:func:`check_sample_weight`             per-sample weights as a 1-D array
=====================================  ==========================================

Examples
--------
>>> from numbers import Real
>>> from classicvision.utils.validation import Interval, validate_parameter_constraints
>>> constraints = {"C": [Interval(Real, 0, None, closed="neither")]}
>>> validate_parameter_constraints(constraints, {"C": 0.5}, caller_name="SVM")
>>> validate_parameter_constraints(constraints, {"C": -1}, caller_name="SVM")
Traceback (most recent call last):
...
classicvision.utils.validation.InvalidParameterError: The 'C' parameter of SVM must be a float in the range (0.0, inf). Got -1 instead.
"""

from __future__ import annotations

import functools
import numbers
import operator
from collections.abc import Callable, Mapping
from numbers import Integral, Real
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike
from sklearn import config_context, get_config
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_array, check_is_fitted

__all__ = [
    "HasMethods",
    "Interval",
    "InvalidParameterError",
    "Options",
    "StrOptions",
    "check_feature_names_in",
    "check_sample_weight",
    "fit_context",
    "validate_estimator_params",
    "validate_parameter_constraints",
]


class InvalidParameterError(ValueError, TypeError):
    """A parameter has an invalid type or value.

    A :class:`ValueError` and a :class:`TypeError`, as scikit-learn's error of the
    same name, so that callers catching either keep working.
    """


def _type_name(t: type) -> str:
    """How a type is named in messages: ``int``, ``float``, ``str``, ``os.PathLike``."""
    if t is Real:
        return "float"
    if t is Integral:
        return "int"
    if t.__module__ == "builtins":
        return t.__qualname__
    return f"{t.__module__}.{t.__qualname__}"


def _join(parts: list) -> str:
    """``"a, b or c"``."""
    parts = [str(p) for p in parts]
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} or {parts[-1]}"


class _Constraint:
    """A condition a parameter value may satisfy, and how messages name it."""

    hidden = False  # a hidden constraint is accepted but not named in messages

    def is_satisfied_by(self, val: Any) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def __str__(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


class _InstancesOf(_Constraint):
    def __init__(self, type_: type) -> None:
        self.type = type_

    def is_satisfied_by(self, val: Any) -> bool:
        return isinstance(val, self.type)

    def __str__(self) -> str:
        return f"an instance of {_type_name(self.type)!r}"


class _NoneConstraint(_Constraint):
    def is_satisfied_by(self, val: Any) -> bool:
        return val is None

    def __str__(self) -> str:
        return "None"


class _Callables(_Constraint):
    def is_satisfied_by(self, val: Any) -> bool:
        return callable(val)

    def __str__(self) -> str:
        return "a callable"


class _AnyOf(_Constraint):
    """The union of several constraints, named as the list of them (``"boolean"`` ...)."""

    def __init__(self, *constraints: _Constraint) -> None:
        self.constraints = constraints

    def is_satisfied_by(self, val: Any) -> bool:
        return any(c.is_satisfied_by(val) for c in self.constraints)

    def __str__(self) -> str:
        return _join(list(self.constraints))


class Interval(_Constraint):
    """A typed range of numbers.

    Parameters
    ----------
    type : {numbers.Integral, numbers.Real}
        The numbers of the range: ints (``Integral``: ``int``, ``numpy.int64``,
        ``bool``) or reals (``Real``: ints and floats).
    left, right : int, float or None
        The bounds; None means unbounded on that side. Ints for an ``Integral``
        range.
    closed : {"left", "right", "both", "neither"}
        Which bounds belong to the range.

    Raises
    ------
    ValueError
        An unknown ``type`` or ``closed``, a closed infinite bound of an
        ``Integral`` range, or ``right <= left``.
    TypeError
        A bound that is not a number of the range's type.

    Examples
    --------
    >>> from numbers import Integral
    >>> from classicvision.utils.validation import Interval
    >>> str(Interval(Integral, 1, None, closed="left"))
    'an int in the range [1, inf)'
    >>> 0 in Interval(Integral, 1, None, closed="left")
    False
    """

    def __init__(self, type: type, left: float | None, right: float | None, *, closed: str) -> None:
        if type not in (Integral, Real):
            raise ValueError(f"type must be either numbers.Integral or numbers.Real. Got {type} instead.")
        if closed not in ("left", "right", "both", "neither"):
            raise ValueError(f"closed must be either 'left', 'right', 'both' or 'neither'. Got {closed} instead.")
        if type is Integral:
            suffix = "for an interval over the integers."
            for side, bound in (("left", left), ("right", right)):
                if bound is not None and not isinstance(bound, Integral):
                    raise TypeError(f"Expecting {side} to be an int {suffix}")
            if left is None and closed in ("left", "both"):
                raise ValueError(f"left can't be None when closed == {closed} {suffix}")
            if right is None and closed in ("right", "both"):
                raise ValueError(f"right can't be None when closed == {closed} {suffix}")
        else:
            for side, bound in (("left", left), ("right", right)):
                if bound is not None and not isinstance(bound, Real):
                    raise TypeError(f"Expecting {side} to be a real number.")
        if left is not None and right is not None and right <= left:
            raise ValueError(f"right can't be less than left. Got left={left} and right={right}")
        self.type = type
        self.left = left
        self.right = right
        self.closed = closed

    def __contains__(self, val: Any) -> bool:
        if not isinstance(val, Integral) and np.isnan(val):
            return False
        below = operator.lt if self.closed in ("left", "both") else operator.le
        above = operator.gt if self.closed in ("right", "both") else operator.ge
        left = -np.inf if self.left is None else self.left
        right = np.inf if self.right is None else self.right
        return not (below(val, left) or above(val, right))

    def is_satisfied_by(self, val: Any) -> bool:
        return isinstance(val, self.type) and val in self

    def __str__(self) -> str:
        kind = "an int" if self.type is Integral else "a float"
        left = "-inf" if self.left is None else self.left
        right = "inf" if self.right is None else self.right
        if self.type is not Integral:  # 0 reads as 0.0 in a range of floats
            left = float(left) if self.left is not None else left
            right = float(right) if self.right is not None else right
        lb = "[" if self.closed in ("left", "both") else "("
        rb = "]" if self.closed in ("right", "both") else ")"
        return f"{kind} in the range {lb}{left}, {right}{rb}"


class Options(_Constraint):
    """A finite set of values of one type.

    Parameters
    ----------
    type : type
        The type every valid value is an instance of.
    options : set
        The valid values.

    Examples
    --------
    >>> from numbers import Integral
    >>> from classicvision.utils.validation import Options
    >>> Options(Integral, {1, 3}).is_satisfied_by(3), Options(Integral, {1, 3}).is_satisfied_by(3.0)
    (True, False)
    """

    def __init__(self, type: type, options: set) -> None:
        self.type = type
        self.options = options

    def is_satisfied_by(self, val: Any) -> bool:
        return isinstance(val, self.type) and val in self.options

    def __str__(self) -> str:
        return f"a {_type_name(self.type)} among {{{', '.join(repr(o) for o in self.options)}}}"


class StrOptions(Options):
    """A finite set of strings.

    Parameters
    ----------
    options : set of str
        The valid strings.
    """

    def __init__(self, options: set[str]) -> None:
        super().__init__(str, options)


class HasMethods(_Constraint):
    """Any object with the named methods (a protocol, not a class).

    Parameters
    ----------
    methods : str or list of str
        The method(s) a valid object has (callable attributes).

    Raises
    ------
    TypeError
        ``methods`` is not a str or a list of str.
    """

    def __init__(self, methods: str | list[str]) -> None:
        if isinstance(methods, str):
            methods = [methods]
        if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods):
            raise TypeError(f"methods must be a str or a list of str, got {methods!r}")
        self.methods = methods

    def is_satisfied_by(self, val: Any) -> bool:
        return all(callable(getattr(val, m, None)) for m in self.methods)

    def __str__(self) -> str:
        names = [repr(m) for m in self.methods]
        joined = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
        return f"an object implementing {joined}"


_BOOLEANS = _AnyOf(_InstancesOf(bool), _InstancesOf(np.bool_))
_NAMED = {
    "boolean": _BOOLEANS,
    "verbose": _AnyOf(Interval(Integral, 0, None, closed="left"), *_BOOLEANS.constraints),
    "random_state": _AnyOf(
        Interval(Integral, 0, 2**32 - 1, closed="both"), _InstancesOf(np.random.RandomState), _NoneConstraint()
    ),
}


def _make_constraint(constraint: Any) -> Any:
    """The constraint object for one entry of a constraint list."""
    if isinstance(constraint, str):
        try:
            return _NAMED[constraint]
        except KeyError:
            raise ValueError(f"Unknown constraint type: {constraint}") from None
    if constraint is None:
        return _NoneConstraint()
    if constraint is callable:
        return _Callables()
    if isinstance(constraint, type):
        return _InstancesOf(constraint)
    if callable(getattr(constraint, "is_satisfied_by", None)):
        return constraint  # ours, or one of another library's with the same protocol
    raise ValueError(f"Unknown constraint type: {constraint}")


def validate_parameter_constraints(
    constraints: Mapping[str, list | str], params: Mapping[str, Any], caller_name: str
) -> None:
    """Check parameter values against their constraints.

    Parameters
    ----------
    constraints : dict
        ``{name: [constraint, ...]}`` (see the module docstring for the kinds of
        constraints), or ``{name: "no_validation"}``. A value is valid when it
        satisfies one constraint of its list.
    params : dict
        ``{name: value}``; names without constraints are not checked.
    caller_name : str
        The estimator or function named in the message.

    Raises
    ------
    InvalidParameterError
        ``The {name!r} parameter of {caller_name} must be {constraints}. Got
        {value!r} instead.`` for the first invalid parameter, the constraints
        listed as ``a, b or c`` (hidden ones left out).
    ValueError
        A constraint of an unknown kind.
    """
    for name, value in params.items():
        listed = constraints.get(name, "no_validation")
        if isinstance(listed, str) and listed == "no_validation":
            continue
        made = [_make_constraint(c) for c in listed]
        if any(c.is_satisfied_by(value) for c in made):
            continue
        shown = [c for c in made if not getattr(c, "hidden", False)]
        raise InvalidParameterError(
            f"The {name!r} parameter of {caller_name} must be {_join(shown)}. Got {value!r} instead."
        )


def validate_estimator_params(estimator: Any) -> None:
    """Check ``estimator.get_params(deep=False)`` against its class's ``_parameter_constraints``.

    Parameters
    ----------
    estimator : estimator
        With a ``_parameter_constraints`` class attribute (a dict as in
        :func:`validate_parameter_constraints`).

    Raises
    ------
    InvalidParameterError
        A parameter is invalid (the message names the estimator's class).
    """
    validate_parameter_constraints(
        estimator._parameter_constraints, estimator.get_params(deep=False), caller_name=type(estimator).__name__
    )


def _is_fitted(estimator: Any) -> bool:
    try:
        check_is_fitted(estimator)
    except NotFittedError:
        return False
    return True


def fit_context(*, prefer_skip_nested_validation: bool) -> Callable:
    """Decorator of ``fit`` (and ``partial_fit``, ``fit_transform``): validate the parameters, then fit.

    Before the method runs, the estimator's parameters are checked against its
    ``_parameter_constraints`` (:func:`validate_estimator_params`), unless
    validation is switched off by scikit-learn's ``skip_parameter_validation``
    setting (:func:`sklearn.config_context`), or the method is a ``partial_fit``
    of an already fitted estimator (checked on its first call only).

    Parameters
    ----------
    prefer_skip_nested_validation : bool
        True: while the method runs, ``skip_parameter_validation`` is on, so the
        estimators and scikit-learn functions it calls do not validate their
        parameters again (they are the library's own, with valid parameters).
        False, for methods that call objects the user passed in (a
        meta-estimator's ``estimator``): those validate their own parameters.

    Returns
    -------
    decorator : callable
        Wraps the method; the wrapper has the method's name and docstring.

    Examples
    --------
    >>> from numbers import Integral
    >>> from sklearn.base import BaseEstimator
    >>> from classicvision.utils.validation import Interval, fit_context
    >>> class Counter(BaseEstimator):
    ...     _parameter_constraints = {"k": [Interval(Integral, 1, None, closed="left")]}
    ...     def __init__(self, k=1):
    ...         self.k = k
    ...     @fit_context(prefer_skip_nested_validation=True)
    ...     def fit(self, X, y=None):
    ...         self.k_ = self.k
    ...         return self
    >>> Counter(k=0).fit(None)
    Traceback (most recent call last):
    ...
    classicvision.utils.validation.InvalidParameterError: The 'k' parameter of Counter must be an int in the range [1, inf). Got 0 instead.
    """

    def decorator(fit_method: Callable) -> Callable:
        @functools.wraps(fit_method)
        def wrapper(estimator, *args, **kwargs):
            skip = get_config()["skip_parameter_validation"]
            refit = fit_method.__name__ == "partial_fit" and _is_fitted(estimator)
            if not skip and not refit:
                validate_estimator_params(estimator)
            with config_context(skip_parameter_validation=bool(prefer_skip_nested_validation or skip)):
                return fit_method(estimator, *args, **kwargs)

        return wrapper

    return decorator


def check_feature_names_in(
    estimator: Any, input_features: ArrayLike | None = None, *, generate_names: bool = True
) -> np.ndarray | None:
    """The input feature names of ``get_feature_names_out``.

    Parameters
    ----------
    estimator : fitted estimator
        Its ``feature_names_in_`` (when fitted on named columns) and
        ``n_features_in_`` are read.
    input_features : (n_features_in_,) array-like of str or None, default=None
        The names given by the caller: they must equal ``feature_names_in_``
        when that is set, and have ``n_features_in_`` entries.
    generate_names : bool, default=True
        With ``input_features=None`` and no ``feature_names_in_``: True gives
        ``x0, x1, ...``; False gives None.

    Returns
    -------
    names : (n_features_in_,) ndarray of str (object dtype), or None

    Raises
    ------
    ValueError
        ``input_features`` differs from ``feature_names_in_`` or has the wrong
        length, or no names can be generated (no ``n_features_in_``).
    """
    names_in = getattr(estimator, "feature_names_in_", None)
    n_in = getattr(estimator, "n_features_in_", None)
    if input_features is not None:
        given = np.asarray(input_features, dtype=object)
        if names_in is not None and not np.array_equal(names_in, given):
            raise ValueError("input_features is not equal to feature_names_in_")
        if n_in is not None and len(given) != n_in:
            raise ValueError(
                f"input_features should have length equal to number of features ({n_in}), got {len(given)}"
            )
        return given
    if names_in is not None:
        return names_in
    if not generate_names:
        return None
    if n_in is None:
        raise ValueError("Unable to generate feature names without n_features_in_")
    return np.asarray([f"x{i}" for i in range(n_in)], dtype=object)


def check_sample_weight(sample_weight: ArrayLike | float, n_samples: int, *, dtype: DTypeLike = None) -> np.ndarray:
    """Per-sample weights as a C-contiguous 1-D float array.

    Parameters
    ----------
    sample_weight : (n_samples,) array-like or float
        A scalar gives every sample that weight.
    n_samples : int
        Number of samples the weights must match.
    dtype : float32, float64 or None, default=None
        The output's dtype; None keeps a float32 or float64 input's (else float64).

    Returns
    -------
    sample_weight : (n_samples,) ndarray of float32 or float64

    Raises
    ------
    ValueError
        Not 1-D, not ``n_samples`` long, or not numeric (or not finite, as
        :func:`sklearn.utils.check_array` refuses).
    """
    if dtype is not None and np.dtype(dtype) not in (np.float32, np.float64):
        dtype = np.float64
    if isinstance(sample_weight, numbers.Number):
        return np.full(n_samples, sample_weight, dtype=dtype if dtype is not None else np.float64)
    weights = check_array(
        sample_weight, accept_sparse=False, ensure_2d=False, order="C",
        dtype=dtype if dtype is not None else [np.float64, np.float32], input_name="sample_weight",
    )
    if weights.ndim != 1:
        raise ValueError(
            f"Sample weights must be 1D array or scalar, got {weights.ndim}D array. Expected either "
            f"a scalar value or a 1D array of length {n_samples}."
        )
    if weights.shape != (n_samples,):
        raise ValueError(f"sample_weight.shape == {weights.shape}, expected {(n_samples,)}!")
    return weights
