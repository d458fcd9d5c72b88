"""Modules that own parameters: the CP module, non-local and SMART blocks, the one video ResNet, presets."""

from cpnet.models.registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
