"""Pure tensor functions (no parameters): the cross-frame kNN, the CP module's pair MLP forms, video point helpers,
the non-local attention and TensorFlow-1 resampling conventions. Each is also importable from its own module."""

from cpnet.ops.attention import embedded_gaussian_attention
from cpnet.ops.knn import check_knn_args, cross_frame_knn, cross_frame_knn_dense
from cpnet.ops.pair_mlp import fold_batch_norm, folded_pair_mlp, fused_pair_mlp, point_projections
from cpnet.ops.resample import pad_same, resize_bilinear_tf1, same_padding
from cpnet.ops.video import from_points, gather_points, pair_features, point_coords, to_points

__all__ = [
    "check_knn_args",
    "cross_frame_knn",
    "cross_frame_knn_dense",
    "embedded_gaussian_attention",
    "fold_batch_norm",
    "folded_pair_mlp",
    "from_points",
    "fused_pair_mlp",
    "gather_points",
    "pad_same",
    "pair_features",
    "point_coords",
    "point_projections",
    "resize_bilinear_tf1",
    "same_padding",
    "to_points",
]
