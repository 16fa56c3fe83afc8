"""Checkpoint tracking of layers a layer holds in a list or dict."""
from __future__ import annotations

import keras


def track_for_checkpoints(layer: keras.layers.Layer, prefix: str, children: list) -> None:
    """Makes layers held in a list/dict visible to ``tf.train.Checkpoint``.

    Keras 3 finds weights inside list/dict attributes, but TensorFlow's checkpoint object graph
    only follows plain attributes: without this, embeddings and hidden layers would silently be
    missing from checkpoints (or saved only through the optimizer's slot references).

    Args:
        layer: the owner; gets one attribute ``_ckpt_<prefix>_<i>`` per child.
        prefix: names this group of children.
        children: the layers, in a fixed order (their index is part of the checkpoint key).
    """
    for i, child in enumerate(children):
        setattr(layer, f"_ckpt_{prefix}_{i}", child)
