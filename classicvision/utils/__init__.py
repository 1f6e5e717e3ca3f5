"""Helpers shared by the estimators of classicvision and cnn.

Submodules
----------
validation     parameter constraints (``Interval``, ``StrOptions``, ``Options``,
               ``HasMethods``), ``validate_parameter_constraints``, the
               ``fit_context`` decorator, feature-name and sample-weight checks
"""

from . import validation

__all__ = ["validation"]
