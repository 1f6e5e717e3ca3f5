"""CNN model registry and the architectures it holds.

Importing this package registers every model; see :func:`list_models`.
"""

from ._registry import (  # noqa: F401
    DEFAULT_CONFIG,
    DEFAULT_RECIPE,
    check_input_size,
    create_model,
    get_model_config,
    get_model_recipe,
    head_parameter_names,
    imagenet_weights_file,
    is_model,
    list_models,
    load_matching_weights,
    models_with_pretrained_weights,
    read_pretrained,
    register_model,
)
from .cifar_resnet import *  # noqa: F401,F403
from .fastnet import *  # noqa: F401,F403
from .googlenet_cifar import *  # noqa: F401,F403
from .imagenet import *  # noqa: F401,F403
from .small import *  # noqa: F401,F403
from .timm_models import *  # noqa: F401,F403
from .vgg_bn_drop import *  # noqa: F401,F403

__all__ = [
    "create_model",
    "list_models",
    "get_model_config",
    "get_model_recipe",
    "register_model",
    "is_model",
    "check_input_size",
    "head_parameter_names",
    "imagenet_weights_file",
    "load_matching_weights",
    "models_with_pretrained_weights",
    "read_pretrained",
    "DEFAULT_CONFIG",
    "DEFAULT_RECIPE",
]
