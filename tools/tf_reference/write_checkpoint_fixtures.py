"""Write the TensorFlow checkpoints that ``tests/convert/test_tf_checkpoint.py`` reads (run with TensorFlow).

Each fixture is a folder under ``tests/fixtures/tf_checkpoint/`` holding what ``tf.compat.v1.train.Saver`` wrote
(``PREFIX.index``, ``PREFIX.data-*``, the ``checkpoint`` state file) and ``expected.npz``: every variable's value
as the session held it when saved, keyed by variable name. Values come from the session, not from TensorFlow's
checkpoint reader, so the test compares our reader with what was saved.

- ``train``: a tiny network in the released CPNet's naming (5-D conv kernels, biases, batch norm, a pointnet
  branch, fc) after two steps of momentum SGD, so the file also holds ``.../Momentum`` slots and ``global_step``;
  plus int32, int64, bool, uint8, float16, float64, scalar and empty variables.
- ``sharded``: ``Saver(sharded=True)`` with variables on two (logical) CPU devices: two ``.data`` files.
- ``exotic``: a string and a bfloat16 variable, which our reader lists but refuses, beside a float32 one.
- ``partitioned``: a variable saved in two slices (``fixed_size_partitioner``), refused, beside a float32 one.

Usage (in the side environment, from the repository root)::

    /work/tfenv/bin/python tools/tf_reference/write_checkpoint_fixtures.py [--out tests/fixtures/tf_checkpoint]
"""

from __future__ import annotations

import argparse
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402  (after the log level is set)

v1 = tf.compat.v1


def _save(out: Path, build: Callable[[np.random.Generator], Callable | None], prefix: str = "model.ckpt",
          devices: int = 1, sharded: bool = False) -> None:
    """Build a graph, initialise it, run its training step (if ``build`` returns one) twice, save, write the npz."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(0)
        train = build(np.random.default_rng(0))
        saver = v1.train.Saver(sharded=sharded, save_relative_paths=True)
        config = v1.ConfigProto(device_count={"CPU": devices}, intra_op_parallelism_threads=1,
                                inter_op_parallelism_threads=1)
        with v1.Session(graph=graph, config=config) as sess:
            sess.run(v1.global_variables_initializer())
            for _ in range(2 if train is not None else 0):
                sess.run(train)
            variables = {v.op.name: v for v in v1.global_variables()}
            values = sess.run(variables)
            step = values.get("global_step")
            saver.save(sess, str(out / prefix), global_step=step, write_meta_graph=False)
    np.savez_compressed(out / "expected.npz", **{k: np.asarray(v) for k, v in values.items() if not _unreadable(k, v)})
    files = sorted(p.name for p in out.iterdir())
    print(f"{out}: {len(values)} variables, files {files}, {sum(p.stat().st_size for p in out.iterdir())} bytes")


def _unreadable(name: str, value: object) -> bool:
    """Variables our reader refuses (strings, bfloat16, partitions, which are saved as slices of one name) stay out
    of the npz; the test checks the refusal instead."""
    array = np.asarray(value)
    return array.dtype.kind in "OSU" or array.dtype.name == "bfloat16" or "/part_" in name


def _conv(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> list[tf.Variable]:
    """Weights, biases and a batch norm as the released code names them (moving statistics not trainable)."""
    cout = shape[-1]
    f32 = np.float32
    return [
        v1.get_variable(f"{name}/weights", initializer=rng.standard_normal(shape).astype(f32)),
        v1.get_variable(f"{name}/biases", initializer=rng.standard_normal(cout).astype(f32)),
        v1.get_variable(f"{name}/bn/beta", initializer=rng.standard_normal(cout).astype(f32)),
        v1.get_variable(f"{name}/bn/gamma", initializer=rng.uniform(0.5, 1.5, cout).astype(f32)),
        v1.get_variable(f"{name}/bn/moving_mean", initializer=rng.standard_normal(cout).astype(f32), trainable=False),
        v1.get_variable(f"{name}/bn/moving_variance", initializer=rng.uniform(0.5, 2, cout).astype(f32),
                        trainable=False),
    ]


def _train_graph(rng: np.random.Generator) -> tf.Operation:
    params = _conv("conv0", (1, 3, 3, 3, 4), rng)
    params += _conv("group0/block1/conv1", (1, 3, 3, 4, 4), rng)
    params += _conv("group0/block1/pointnet/conv0", (1, 1, 11, 2), rng)
    params.append(v1.get_variable("fc/weights", initializer=rng.standard_normal((4, 3)).astype(np.float32)))
    params.append(v1.get_variable("fc/biases", initializer=np.zeros(3, np.float32)))
    v1.get_variable("extra/counts", initializer=rng.integers(-1000, 1000, (2, 3)).astype(np.int32), trainable=False)
    v1.get_variable("extra/ids", initializer=np.array([-(2**40), 0, 2**62], np.int64), trainable=False)
    v1.get_variable("extra/flags", initializer=np.array([True, False, True, True, False]), trainable=False)
    v1.get_variable("extra/pixels", initializer=rng.integers(0, 256, (2, 2)).astype(np.uint8), trainable=False)
    v1.get_variable("extra/half", initializer=rng.standard_normal(4).astype(np.float16), trainable=False)
    v1.get_variable("extra/precise", initializer=rng.standard_normal(3), trainable=False)  # float64
    v1.get_variable("extra/scalar", initializer=np.float32(3.25), trainable=False)
    v1.get_variable("extra/empty", initializer=np.zeros((0, 3), np.float32), trainable=False)
    trainable = [p for p in params if p.trainable]
    loss = tf.add_n([tf.reduce_sum(tf.square(p)) for p in trainable])
    step = v1.train.get_or_create_global_step()
    return v1.train.MomentumOptimizer(0.05, 0.9).minimize(loss, global_step=step, var_list=trainable)


def _sharded_graph(rng: np.random.Generator) -> None:
    for device in (0, 1):
        with tf.device(f"/cpu:{device}"):
            _conv(f"group{device}/block0/conv1", (1, 3, 3, 2, 3), rng)


def _exotic_graph(rng: np.random.Generator) -> None:
    v1.get_variable("a/weights", initializer=rng.standard_normal((2, 3)).astype(np.float32))
    v1.get_variable("b/label", initializer=tf.constant(b"not a tensor of numbers"), trainable=False)
    v1.get_variable("c/brain", initializer=tf.constant([1.5, -2.0], tf.bfloat16), trainable=False)


def _partitioned_graph(rng: np.random.Generator) -> None:
    v1.get_variable("a/weights", initializer=rng.standard_normal((2, 3)).astype(np.float32))
    v1.get_variable("embedding", shape=(6, 2), partitioner=v1.fixed_size_partitioner(2),
                    initializer=v1.random_normal_initializer(seed=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures/tf_checkpoint"))
    args = parser.parse_args()
    v1.disable_eager_execution()
    print(f"TensorFlow {tf.__version__}")
    _save(args.out / "train", _train_graph)
    _save(args.out / "sharded", _sharded_graph, devices=2, sharded=True)
    _save(args.out / "exotic", _exotic_graph)
    _save(args.out / "partitioned", _partitioned_graph)


if __name__ == "__main__":
    main()
