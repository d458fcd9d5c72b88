"""cpnet: CPNet (Learning Video Representations from Correspondence Proposals) in PyTorch.

The names the README's "As a library" shows: build a preset (``create_model``, ``list_models``), the one video
ResNet, the CP module, the cross-frame kNN, and ``preprocess`` (decoded frames to an exported model's input; loaded
on first use). Subpackages: ``cpnet.models``, ``cpnet.ops``; the data, engine, CLI and reports load only when
imported.
"""

from cpnet.models import CPModule, VideoResNet, create_model, list_models, register_model
from cpnet.ops.knn import cross_frame_knn

__version__ = "0.1.0"
__all__ = [
    "CPModule",
    "VideoResNet",
    "create_model",
    "cross_frame_knn",
    "list_models",
    "preprocess",
    "register_model",
    "__version__",
]


def __getattr__(name: str):
    if name == "preprocess":  # the data layer loads on first use: `import cpnet` stays light
        from cpnet.data.preprocess import preprocess

        return preprocess
    raise AttributeError(f"module 'cpnet' has no attribute {name!r}")
