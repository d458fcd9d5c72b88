"""Converting other frameworks' files into cpnet's: reading TensorFlow checkpoints without TensorFlow."""

from cpnet.convert.tf_checkpoint import list_tf_variables, read_tf_checkpoint, resolve_tf_prefix

__all__ = ["list_tf_variables", "read_tf_checkpoint", "resolve_tf_prefix"]
