"""Time ``cpnet.convert.read_tf_checkpoint`` against TensorFlow's reader on a ResNet-34-sized checkpoint.

Three steps, two environments (the side one has TensorFlow, the project's has cpnet and torch)::

    /work/tfenv/bin/python tools/tf_reference/bench_checkpoint_reader.py write /tmp/tfbench
    /work/tfenv/bin/python tools/tf_reference/bench_checkpoint_reader.py time-tf /tmp/tfbench
    .venv/bin/python tools/tf_reference/bench_checkpoint_reader.py time-ours /tmp/tfbench

``write`` saves, with ``tf.compat.v1.train.Saver``, two checkpoints under the given folder: ``r34`` (the released
C2D ResNet-34 CPNet's variables in its naming, about 21.8 M float32 parameters, each trainable one with a
``/Momentum`` slot, and ``global_step``) and ``many`` (4000 small variables with long names, so the ``.index`` spans
several table blocks). It records the SHA-256 of every variable as TensorFlow reads it back. ``time-tf`` and
``time-ours`` each read every variable of both, three times (best time kept; the files are in the page cache after
``write``), check the digests, and print one JSON line. Nothing is written to the repository.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

_BLOCKS = (3, 4, 6, 3)  # ResNet-34
_WIDTHS = (64, 128, 256, 512)
_CP_AT = {1: (2, 3), 2: (3, 4, 5)}  # the released R34: CP after group1 blocks 2, 3 and group2 blocks 3, 4, 5
_CLASSES = 27  # Jester


def _r34_shapes() -> dict[str, tuple[int, ...]]:
    """Trainable and moving-statistics variable shapes of the released C2D ResNet-34 CPNet, in its naming."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name: str, kernel: tuple[int, ...], cin: int, cout: int, final: bool = False) -> None:
        shapes[f"{name}/weights"] = (*kernel, cin, cout)
        shapes[f"{name}/biases"] = (cout,)
        bn = f"{name.rsplit('/', 1)[0]}/bn_final" if final else f"{name}/bn"  # conv_final's BN is its sibling
        for stat in ("beta", "gamma", "moving_mean", "moving_variance"):
            shapes[f"{bn}/{stat}"] = (cout,)

    conv("conv0", (1, 7, 7), 3, 64)
    cin = 64
    for g, (blocks, width) in enumerate(zip(_BLOCKS, _WIDTHS)):
        for b in range(blocks):
            name = f"group{g}/block{b}"
            conv(f"{name}/conv1", (1, 3, 3), cin, width)
            conv(f"{name}/conv2", (1, 3, 3), width, width)
            if cin != width:
                conv(f"{name}/convshortcut", (1, 1, 1), cin, width)
            if b in _CP_AT.get(g, ()):
                mlp = (width // 4, width // 2)
                conv(f"{name}/pointnet/conv0", (1, 1), 2 * width + 3, mlp[0])
                conv(f"{name}/pointnet/conv1", (1, 1), mlp[0], mlp[1])
                conv(f"{name}/pointnet/conv_final", (1, 1, 1), mlp[1], width, final=True)
            cin = width
    shapes["fc/weights"] = (512, _CLASSES)
    shapes["fc/biases"] = (_CLASSES,)
    return shapes


def _write(folder: Path) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    v1 = tf.compat.v1
    v1.disable_eager_execution()
    folder.mkdir(parents=True, exist_ok=True)
    shapes = _r34_shapes()
    many = {f"tower_{i // 100:02d}/stage_{i % 100:03d}/a_rather_long_layer_name_for_the_index/weights": (i % 7 + 1,)
            for i in range(4000)}
    for name, variables in (("r34", shapes), ("many", many)):
        graph = tf.Graph()
        with graph.as_default():
            init = v1.random_normal_initializer(seed=0)
            for var, shape in variables.items():
                v1.get_variable(var, shape, initializer=init)
                if name == "r34" and "moving_" not in var:
                    v1.get_variable(f"{var}/Momentum", shape, initializer=init, trainable=False)
            if name == "r34":
                v1.train.get_or_create_global_step()
            with v1.Session(graph=graph) as sess:
                sess.run(v1.global_variables_initializer())
                v1.train.Saver().save(sess, str(folder / name), write_meta_graph=False, write_state=False)
        reader = tf.train.load_checkpoint(str(folder / name))
        digests = {var: _digest(reader.get_tensor(var)) for var in reader.get_variable_to_shape_map()}
        (folder / f"{name}.digests.json").write_text(json.dumps(digests, sort_keys=True))
        params = sum(int(np.prod(s)) for v, s in reader.get_variable_to_shape_map().items() if "/Momentum" not in v)
        size = sum(p.stat().st_size for p in folder.glob(f"{name}.*") if not p.name.endswith(".json"))
        print(json.dumps({"checkpoint": name, "variables": len(digests), "parameters_without_slots": params,
                          "bytes": size, "index_bytes": (folder / f"{name}.index").stat().st_size}))


def _digest(array: np.ndarray) -> str:
    array = np.ascontiguousarray(array)
    return f"{array.dtype.str}{array.shape}:{hashlib.sha256(array.tobytes()).hexdigest()}"


def _time(folder: Path, reader: str) -> None:
    """Read both checkpoints (best of three), check every variable against the digests, print one JSON line."""
    start = time.perf_counter()
    if reader == "tf":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        def read(prefix: str) -> dict[str, np.ndarray]:
            r = tf.train.load_checkpoint(prefix)
            return {name: r.get_tensor(name) for name in r.get_variable_to_shape_map()}
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
        from cpnet.convert import read_tf_checkpoint as read
    result: dict[str, object] = {"reader": reader, "import_s": round(time.perf_counter() - start, 3)}
    for name in ("r34", "many"):
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            values = read(str(folder / name))
            best = min(best, time.perf_counter() - t)
        expected = json.loads((folder / f"{name}.digests.json").read_text())
        got = {var: _digest(value) for var, value in values.items()}
        if got != expected:
            bad = sorted(k for k in expected.keys() | got.keys() if got.get(k) != expected.get(k))
            raise SystemExit(f"{name}: {len(bad)} variables differ from TensorFlow's, first {bad[:3]}")
        result[f"{name}_read_s"] = round(best, 3)
        result[f"{name}_variables"] = len(values)
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["write", "time-tf", "time-ours"])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    if args.step == "write":
        _write(args.folder)
    else:
        _time(args.folder, "tf" if args.step == "time-tf" else "ours")


if __name__ == "__main__":
    main()
