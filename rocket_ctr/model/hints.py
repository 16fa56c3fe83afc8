"""Hint losses between the light logit l and the booster logit z (paper: "Hint loss functions").

Each takes per-example logits [B] and returns per-example losses [B]; the caller decides whether
z carries gradient (gradient block) and how to average.
"""
from __future__ import annotations

import tensorflow as tf


def mimic(light_logit, booster_logit, temperature=None):
    """Logit MSE ``(l − z)²`` (the paper's L_mimic, its best hint)."""
    return tf.square(light_logit - booster_logit)


def probability_mse(light_logit, booster_logit, temperature=None):
    """Probability MSE ``(σ(l) − σ(z))²``; gradients vanish where σ saturates."""
    return tf.square(tf.sigmoid(light_logit) - tf.sigmoid(booster_logit))


def knowledge_distillation(light_logit, booster_logit, temperature=1.0):
    """Hinton's KD: T² · CE(σ(z/T), σ(l/T)), the booster's softened probability as soft label."""
    soft_target = tf.sigmoid(booster_logit / temperature)
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=soft_target, logits=light_logit / temperature)
    return temperature ** 2 * ce


HINTS = {"mimic": mimic, "mse": probability_mse, "kd": knowledge_distillation}


def get_hint(name: str):
    """Hint loss by name: ``mimic`` (default), ``mse`` or ``kd``."""
    if name not in HINTS:
        raise ValueError(f"unknown hint {name!r}; expected one of {sorted(HINTS)}")
    return HINTS[name]
