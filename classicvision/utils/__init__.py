"""Helpers shared by the estimators of classicvision and cnn.

Submodules
----------
validation     parameter constraints (``Interval``, ``StrOptions``, ``Options``,
               ``HasMethods``), ``validate_parameter_constraints``, the
               ``fit_context`` decorator, feature-name and sample-weight checks
parallel       ``dask_backend`` (joblib's dask backend on a Dask cluster), ``worker_threads``
"""

from . import parallel, validation

__all__ = ["parallel", "validation"]
