"""The authors' released CPNet R34 for 112² clips (the Jester model), re-implemented in TensorFlow for parity tests.

Written for this project from the description of the released graph (GitHub ``xingyul/cpnet``, read, not copied):
``tf.compat.v1`` graph mode, activations N, T, H, W, C, and the released checkpoints' variable names, so that
``cpnet convert tf`` maps a checkpoint of this graph as it maps theirs. Run it in the side environment (README);
cpnet never imports it.

The graph, as the released ``c2d_resnet34_cp_112`` builds it:

- every conv: ``weights`` (T, H, W, C_in, C_out), ``biases``, TF ``'SAME'`` padding; with a BN (``bn/{beta, gamma,
  moving_mean, moving_variance}``, ε = 1e-3) unless it is the CP output conv;
- stem ``conv0`` 1×7×7 at stride 1 + BN + ReLU, then max-pool 1×3×3 / 2 ``'SAME'``;
- ``group0..3`` of 3, 4, 6, 3 basic blocks (64·2^g channels, stride 2 at block 0 of groups 1–3): ``conv1`` + BN +
  ReLU, ``conv2`` + BN, ``convshortcut`` (1×1×1, strided) + BN when the channels change, sum; the CP module on the
  sum after group1 blocks 2, 3 and group2 blocks 3, 4, 5; ReLU (the end point ``res{g}_{i}_out``);
- global mean over T, H, W, ``fc`` (C, classes) + bias. Dropout is the identity at inference.

The CP module (``pointnet`` scope) on a block's sum x (N, T, H, W, C): in group1 x is first shrunk to (H/2, W/2)
with TF1's legacy bilinear resize (``align_corners=False, half_pixel_centers=False``); each point's k = 8 nearest
points by L2 distance, its own frame excluded by adding −1e8 to the same-frame blocks of −‖x_p − x_q‖² before a
``top_k``; pairs [coord(q) − coord(p), x_p, x_q] with coords (t/T, h/H, w/W) of the searched grid; MLP [C/4, C/2]
(1×1 ``conv{j}`` + bias + BN + ReLU); max over the k pairs; ``conv_final`` (1×1×1, bias) + ``bn_final``; resized
back to (H, W) in group1.

BatchNorms read their moving statistics, as in the released inference, unless the boolean ``training`` tensor is
True: then they use the batch's moments, which the fixture writer reads once to give the random moving statistics
a realistic scale (random weights with unit moving statistics would grow activations ~3× per block).
"""

from __future__ import annotations

import zlib

import numpy as np
import tensorflow as tf

v1 = tf.compat.v1

BN_EPS = 1e-3
MASK = -1e8  # added to same-frame distances, as the released kNN does
BLOCKS = (3, 4, 6, 3)
CP_AT = {1: (2, 3), 2: (3, 4, 5)}  # group → blocks with a CP module
SHRINK = {1: 2}  # group → spatial shrink of the CP search
K = 8
MOMENTS = "bn_moments"  # collection of (moving_mean, moving_variance, batch_mean, batch_var) per BatchNorm


class Init:
    """Initial values that depend only on (seed, variable name): He-normal kernels, small random biases and BN
    offsets, γ in [0.5, 1.5]; moving statistics 0 and 1 until calibrated."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def rng(self, name: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(name.encode())])

    def variable(self, name: str, shape: tuple[int, ...], trainable: bool = True) -> tf.Variable:
        full = f"{v1.get_variable_scope().name}/{name}".lstrip("/")
        rng, leaf = self.rng(full), name.rsplit("/", 1)[-1]
        if leaf == "weights":
            value = rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[:-1])), shape)  # He: fan-in = all but C_out
        elif leaf == "gamma":
            value = rng.uniform(0.5, 1.5, shape)
        elif leaf in ("biases", "beta"):
            value = rng.normal(0.0, 0.2, shape)
        elif leaf == "moving_variance":
            value = np.ones(shape)
        else:
            value = np.zeros(shape)
        return v1.get_variable(name, initializer=value.astype(np.float32), trainable=trainable)


def batch_norm(x: tf.Tensor, init: Init, training: tf.Tensor, scope: str) -> tf.Tensor:
    """Per-channel BN over every axis but the last (ε = 1e-3): moving statistics, or the batch's when training."""
    c = int(x.shape[-1])
    with v1.variable_scope(scope):
        beta, gamma = init.variable("beta", (c,)), init.variable("gamma", (c,))
        mean = init.variable("moving_mean", (c,), trainable=False)
        variance = init.variable("moving_variance", (c,), trainable=False)
    batch_mean, batch_var = tf.nn.moments(x, list(range(x.shape.rank - 1)))
    v1.add_to_collection(MOMENTS, (mean, variance, batch_mean, batch_var))
    use_mean, use_var = tf.cond(training, lambda: (batch_mean, batch_var),
                                lambda: (tf.identity(mean), tf.identity(variance)))
    return tf.nn.batch_normalization(x, use_mean, use_var, beta, gamma, BN_EPS)


def conv3d(x: tf.Tensor, channels: int, kernel: tuple[int, int, int], stride: int, scope: str, init: Init,
           training: tf.Tensor, bn: bool = True, relu: bool = True) -> tf.Tensor:
    """Conv (spatial stride only, ``'SAME'``) + bias, then BN and ReLU as asked; x (N, T, H, W, C)."""
    with v1.variable_scope(scope):
        weights = init.variable("weights", (*kernel, int(x.shape[-1]), channels))
        biases = init.variable("biases", (channels,))
        y = tf.nn.bias_add(tf.nn.conv3d(x, weights, [1, 1, stride, stride, 1], "SAME"), biases)
        if bn:
            y = batch_norm(y, init, training, "bn")
    return tf.nn.relu(y) if relu else y


def resize_frames(x: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """TF1's legacy bilinear resize of every frame: (N, T, H, W, C) → (N, T, height, width, C)."""
    n, t, _, _, c = (int(d) for d in x.shape)
    frames = tf.reshape(x, [n * t, *x.shape[2:]])  # (N·T, H, W, C)
    frames = v1.image.resize_bilinear(frames, [height, width], align_corners=False, half_pixel_centers=False)
    return tf.reshape(frames, [n, t, height, width, c])


def cross_frame_knn(points: tf.Tensor, k: int, frame_points: int) -> tf.Tensor:
    """Indices (N, P, k) of each point's k nearest points by L2 distance, points of its own frame excluded by a
    −1e8 offset; points (N, P, C) frame-major with ``frame_points`` per frame."""
    p = int(points.shape[1])
    square = tf.reduce_sum(tf.square(points), axis=-1, keepdims=True)  # (N, P, 1)
    neg_distance = 2 * tf.matmul(points, points, transpose_b=True) - square - tf.transpose(square, [0, 2, 1])
    frame = np.arange(p) // frame_points
    same_frame = np.where(frame[:, None] == frame[None, :], MASK, 0.0).astype(np.float32)  # (P, P)
    return tf.nn.top_k(neg_distance + same_frame, k=k, sorted=False).indices


def coords(t: int, h: int, w: int) -> tf.Tensor:
    """(t/T, h/H, w/W) of every point of a T×H×W grid, frame-major: (P, 3)."""
    axes = [tf.range(n, dtype=tf.float32) / n for n in (t, h, w)]
    return tf.reshape(tf.stack(tf.meshgrid(*axes, indexing="ij"), axis=-1), [-1, 3])


def cp_module(x: tf.Tensor, k: int, mlp: tuple[int, ...], shrink: int | None, init: Init, training: tf.Tensor,
              end_points: dict, name: str) -> tf.Tensor:
    """CP(x) for a block's sum x (N, T, H, W, C) → (N, T, H, W, C); the caller adds it and applies the ReLU."""
    n, t, h, w, c = (int(d) for d in x.shape)
    hs, ws = (h // shrink, w // shrink) if shrink else (h, w)
    search = resize_frames(x, hs, ws) if shrink else x  # (N, T, hs, ws, C)
    points = tf.reshape(search, [n, t * hs * ws, c])  # (N, P, C)
    idx = cross_frame_knn(points, k, hs * ws)  # (N, P, k)
    end_points[f"knn/{name}"], end_points[f"search/{name}"] = idx, points
    grid = coords(t, hs, ws)  # (P, 3)
    delta = tf.gather(grid, idx) - grid[None, :, None]  # (N, P, k, 3): neighbour − query
    query = tf.tile(points[:, :, None], [1, 1, k, 1])  # (N, P, k, C)
    neighbour = tf.gather(points, idx, batch_dims=1)  # (N, P, k, C)
    pairs = tf.concat([delta, query, neighbour], axis=-1)  # (N, P, k, 3 + 2C)
    with v1.variable_scope("pointnet"):
        for j, width in enumerate(mlp):
            with v1.variable_scope(f"conv{j}"):
                weights = init.variable("weights", (1, 1, int(pairs.shape[-1]), width))
                biases = init.variable("biases", (width,))
                pairs = tf.nn.bias_add(tf.nn.conv2d(pairs, weights, [1, 1, 1, 1], "VALID"), biases)
                pairs = tf.nn.relu(batch_norm(pairs, init, training, "bn"))
        pooled = tf.reshape(tf.reduce_max(pairs, axis=2), [n, t, hs, ws, mlp[-1]])  # max over k
        y = conv3d(pooled, c, (1, 1, 1), 1, "conv_final", init, training, bn=False, relu=False)
        y = batch_norm(y, init, training, "bn_final")
    return resize_frames(y, h, w) if shrink else y


def basic_block(x: tf.Tensor, channels: int, stride: int, cp: dict | None, init: Init, training: tf.Tensor,
                end_points: dict, name: str) -> tf.Tensor:
    """conv1 + BN + ReLU, conv2 + BN, shortcut (projected when the channels change), sum, CP, ReLU."""
    branch = conv3d(x, channels, (1, 3, 3), stride, "conv1", init, training)
    branch = conv3d(branch, channels, (1, 3, 3), 1, "conv2", init, training, relu=False)
    if int(x.shape[-1]) != channels:
        x = conv3d(x, channels, (1, 1, 1), stride, "convshortcut", init, training, relu=False)
    s = x + branch
    if cp is not None:
        s = s + cp_module(s, cp["k"], cp["mlp"], cp["shrink"], init, training, end_points, name)
    return tf.nn.relu(s)


def released_r34_112(clip: tf.Tensor, num_classes: int, init: Init, training: tf.Tensor,
                     width_divisor: int = 1) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """Logits (N, classes) of a clip (N, T, H, W, 3) and the end points ``res{g}_{i}_out`` (every block's output),
    ``knn/group{g}/block{i}`` (CP neighbour indices) and ``search/…`` (the points searched)."""
    width = 64 // width_divisor
    end_points: dict[str, tf.Tensor] = {}
    net = conv3d(clip, width, (1, 7, 7), 1, "conv0", init, training)
    net = tf.nn.max_pool3d(net, [1, 1, 3, 3, 1], [1, 1, 2, 2, 1], "SAME")
    for g, blocks in enumerate(BLOCKS):
        channels = width * 2**g
        for i in range(blocks):
            cp = None
            if i in CP_AT.get(g, ()):
                cp = {"k": K, "mlp": (channels // 4, channels // 2), "shrink": SHRINK.get(g)}
            with v1.variable_scope(f"group{g}"), v1.variable_scope(f"block{i}"):
                net = basic_block(net, channels, 2 if g > 0 and i == 0 else 1, cp, init, training, end_points,
                                  f"group{g}/block{i}")
            end_points[f"res{g}_{i}_out"] = net
    pooled = tf.reduce_mean(net, axis=[1, 2, 3])  # (N, C)
    with v1.variable_scope("fc"):
        weights = init.variable("weights", (int(pooled.shape[-1]), num_classes))
        logits = tf.nn.bias_add(tf.matmul(pooled, weights), init.variable("biases", (num_classes,)))
    return logits, end_points
