"""The CNN track of classicvision: a model registry and a scikit-learn style classifier.

``cnn.models``      registry: ``create_model``, ``list_models``, ``get_model_config``, ``get_model_recipe``
``cnn.data``        uint8 images held on the device, augmented per batch
``cnn.engine``      ``train_one_epoch``, ``evaluate``, checkpoints
``cnn.classifier``  :class:`CNNClassifier`
"""

from .classifier import CNNClassifier, MemoryPlanError
from .models import create_model, get_model_config, get_model_recipe, list_models

__all__ = ["CNNClassifier", "MemoryPlanError", "create_model", "list_models", "get_model_config", "get_model_recipe"]
