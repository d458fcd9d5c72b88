"""cpnet: CPNet (Learning Video Representations from Correspondence Proposals) in PyTorch."""

from cpnet.models.registry import create_model, list_models

__version__ = "0.1.0"
__all__ = ["create_model", "list_models", "__version__"]
