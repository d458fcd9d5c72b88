"""Modules that own parameters: the CP module, non-local and SMART blocks, the one video ResNet, presets; and their
weights files (``weights``: cpnet checkpoints and ``.safetensors``, read for ``create_model(pretrained=...)``).

Import order is the dependency order: ``registry`` (the dict, the decorator, ``create_model``) imports no model;
``presets`` imports ``registry`` and ``resnet`` and registers every preset on import, here, so that
``create_model`` finds them whichever way it is imported.
"""

from cpnet.models import presets  # noqa: F401  (registers the presets)
from cpnet.models.bounds import MAX_PARAMS, max_params
from cpnet.models.cp import CPModule, CPTrace
from cpnet.models.imagenet import LoadReport, load_imagenet
from cpnet.models.nonlocal_block import NonLocalBlock
from cpnet.models.params import count_params, count_params_paper
from cpnet.models.registry import create_model, list_models, register_model
from cpnet.models.resnet import VideoResNet
from cpnet.models.smart import SMARTBlock
from cpnet.models.weights import load_weights, save_safetensors

__all__ = [
    "MAX_PARAMS",
    "CPModule",
    "CPTrace",
    "LoadReport",
    "NonLocalBlock",
    "SMARTBlock",
    "VideoResNet",
    "count_params",
    "count_params_paper",
    "create_model",
    "list_models",
    "load_imagenet",
    "load_weights",
    "max_params",
    "register_model",
    "save_safetensors",
]
