"""The CNN track of classicvision: a model registry and a scikit-learn style classifier.

``cnn.models``      registry: ``create_model``, ``list_models``, ``get_model_config``, ``get_model_recipe``
``cnn.data``        uint8 images held on the device, augmented per batch
``cnn.engine``      ``train_one_epoch``, ``evaluate``, checkpoints
``cnn.classifier``  :class:`CNNClassifier`
``cnn.features``    :class:`CNNFeatures`, a network's pooled penultimate features for a classic classifier
"""

from .classifier import CNNClassifier, MemoryPlanError
from .features import CNNFeatures
from .models import create_model, get_model_config, get_model_recipe, list_models

__all__ = [
    "CNNClassifier",
    "CNNFeatures",
    "MemoryPlanError",
    "create_model",
    "list_models",
    "get_model_config",
    "get_model_recipe",
]
