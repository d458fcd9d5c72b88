"""`cpnet convert tf`: the authors' released TensorFlow CPNet checkpoints as cpnet checkpoints."""

from __future__ import annotations

import argparse
import time

from cpnet.app.convert import convert_tf


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("convert", help="convert the authors' released TF checkpoints",
                              description="Convert other frameworks' checkpoints into cpnet checkpoints.")
    sub = p.add_subparsers(dest="source", metavar="SOURCE", required=True)
    tf = sub.add_parser("tf", help="a released TensorFlow CPNet (model-*.ckpt)",
                        description="Read a TensorFlow 1 checkpoint of the authors' released CPNet (no TensorFlow "
                                    "needed) and write a cpnet checkpoint that cpnet eval, predict, export, "
                                    "visualize and train --init accept. The weights keep their licence "
                                    "(CC BY-NC-SA 4.0).")
    tf.add_argument("--checkpoint", required=True, help="checkpoint prefix, e.g. model-100000.ckpt (the files "
                    "PREFIX.index and PREFIX.data-*), or the .index file")
    tf.add_argument("--model", required=True, help="released preset, e.g. cpnet_r34_released_112 (Jester) or "
                    "cpnet_r34_released_224 (Something-Something v2)")
    tf.add_argument("--labels", required=True, help="the dataset's official label file, in the released training's "
                    "order: jester-v1-labels.csv or something-something-v2-labels.json")
    tf.add_argument("--out", required=True, help="cpnet checkpoint to write (.pt)")
    tf.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    tf.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    meta = convert_tf(args.checkpoint, args.model, args.labels, args.out, force=args.force)
    print(f"{args.out}: {meta['model_name']} with {meta['num_classes']} classes from {meta['converted_from']} "
          f"[{time.perf_counter() - start:.1f} s]")
    return 0
