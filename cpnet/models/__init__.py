"""Modules that own parameters: the CP module, non-local and SMART blocks, the one video ResNet, presets."""

from cpnet.models.cp import CPModule
from cpnet.models.imagenet import LoadReport, load_imagenet
from cpnet.models.nonlocal_block import NonLocalBlock
from cpnet.models.params import count_params, count_params_paper
from cpnet.models.registry import create_model, list_models, register_model
from cpnet.models.resnet import VideoResNet
from cpnet.models.smart import SMARTBlock

__all__ = [
    "CPModule",
    "LoadReport",
    "NonLocalBlock",
    "SMARTBlock",
    "VideoResNet",
    "count_params",
    "count_params_paper",
    "create_model",
    "list_models",
    "load_imagenet",
    "register_model",
]
