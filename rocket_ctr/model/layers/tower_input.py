"""A tower's x from an embedding bank's lookups and the tower's pooled interest."""
from __future__ import annotations

import tensorflow as tf


def tower_input(embedded: dict, interest: tf.Tensor) -> tf.Tensor:
    """A tower's x = [user profile embeddings, pooled interest, candidate embeddings, other item
    embeddings], user-side parts broadcast to the N candidates."""
    user, rest = tower_input_parts(embedded, interest)
    return rest if user is None else join_user(user, rest)


def tower_input_parts(embedded: dict, interest: tf.Tensor) -> tuple:
    """:func:`tower_input` in two parts, for :meth:`rocket_ctr.model.layers.mlp.MLP.call_parts`.

    Returns:
        (user profile embeddings [U, Du], not broadcast (U = 1 for a one-user request; None
        without user features), the rest of x [N, D − Du]).
    """
    user = _concat(list(embedded["user"])) if embedded["user"] else None
    return user, _concat([interest, embedded["candidate"], *embedded["items"]])


def join_user(user: tf.Tensor, rest: tf.Tensor) -> tf.Tensor:
    """[user broadcast to the N rows of ``rest``, rest]: the x of :func:`tower_input_parts`' parts."""
    return tf.concat([tf.broadcast_to(user, [tf.shape(rest)[0], user.shape[-1]]), rest], axis=-1)


def _concat(parts: list) -> tf.Tensor:
    return parts[0] if len(parts) == 1 else tf.concat(parts, -1)
