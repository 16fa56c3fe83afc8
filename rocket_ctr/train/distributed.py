"""Distribution strategies from ``TF_CONFIG``: which task this process is, and what it may write.

``TF_CONFIG`` is the standard way a cluster manager (Kubernetes' training operator, Vertex AI,
``rocket-ctr launch-local``) tells each process the cluster and its own place in it::

    {"cluster": {"chief": ["host0:port"], "worker": ["host1:port", ...], "ps": [...]},
     "task": {"type": "worker", "index": 0}}

``multi-worker``: every task is a data-parallel replica (``chief`` and ``worker``; no ``ps``).
``parameter-server`` is refused with the reason (:data:`PARAMETER_SERVER_UNSUPPORTED`);
``benchmarks/ps_keras3_probe.py`` shows what fails with Keras 3.
"""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import tensorflow as tf

from rocket_ctr.errors import InputError

STRATEGIES = ("default", "multi-worker")
TASK_TYPES = ("chief", "worker", "ps", "evaluator")  # what a TF_CONFIG may name; multi-worker takes chief/worker
PARAMETER_SERVER_UNSUPPORTED = (
    "--strategy parameter-server is not supported by the trainer: Keras 3 variables cannot be "
    "differentiated once partitioned across ps tasks ('ShardedVariable' object has no attribute "
    "'handle') and Keras' Embedding pulls whole tables; see docs/distributed.md and "
    "benchmarks/ps_keras3_probe.py. Use --strategy multi-worker")


@dataclasses.dataclass(frozen=True)
class TaskInfo:
    """This process's place in the cluster.

    Attributes:
        task_type: ``chief``, ``worker`` or None (single process).
        task_index: index within its type.
        num_workers: data-parallel replicas (chief + workers for multi-worker; 1 otherwise).
        worker_index: this replica's index in [0, num_workers): its input shard.
        is_chief: writes checkpoints, TensorBoard, metrics.json and exports.
    """

    task_type: str | None = None
    task_index: int = 0
    num_workers: int = 1
    worker_index: int = 0
    is_chief: bool = True


def read_tf_config(environ=None) -> dict | None:
    """Parses and checks ``TF_CONFIG``.

    Args:
        environ: mapping to read from (default ``os.environ``).
    Returns:
        ``{"cluster": {type: [address, ...]}, "task": {"type": str, "index": int}}``, or None
        when ``TF_CONFIG`` is unset or empty.
    Raises:
        InputError: not JSON, no ``cluster``/``task``, an unknown task type, or a task that is
            not in the cluster.
    """
    text = (environ if environ is not None else os.environ).get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        config = json.loads(text)
    except ValueError as err:
        raise InputError(f"TF_CONFIG is not valid JSON ({err})") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not cluster or not isinstance(task, dict):
        raise InputError('TF_CONFIG needs {"cluster": {"worker": ["host:port", ...]}, '
                         '"task": {"type": "worker", "index": 0}}')
    for name, addresses in cluster.items():
        if name not in TASK_TYPES:
            raise InputError(f"TF_CONFIG: unknown task type {name!r} in cluster (expected {TASK_TYPES})")
        if not isinstance(addresses, list) or not addresses or \
                not all(isinstance(a, str) and ":" in a for a in addresses):
            raise InputError(f"TF_CONFIG: cluster[{name!r}] must be a non-empty list of 'host:port', "
                             f"got {addresses!r}")
    if name_count(cluster, "chief") > 1:
        raise InputError("TF_CONFIG: a cluster has at most one chief")
    task_type, index = task.get("type"), task.get("index", 0)
    if task_type not in cluster:
        raise InputError(f"TF_CONFIG: task type {task_type!r} is not in the cluster ({sorted(cluster)})")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(cluster[task_type]):
        raise InputError(f"TF_CONFIG: task index {index!r} out of range for {len(cluster[task_type])} "
                         f"{task_type} task(s)")
    return {"cluster": cluster, "task": {"type": task_type, "index": index}}


def name_count(cluster: dict, task_type: str) -> int:
    return len(cluster.get(task_type, []))


def task_info(tf_config: dict | None, strategy: str) -> TaskInfo:
    """Where this process stands for a strategy (see :class:`TaskInfo`).

    Raises:
        InputError: an unknown or unsupported strategy, or one that needs a TF_CONFIG that is
            missing or has the wrong task types.
    """
    _check_strategy(strategy)
    if strategy == "default":
        return TaskInfo()
    if tf_config is None:
        raise InputError(f"--strategy {strategy} needs TF_CONFIG (the cluster and this task); "
                         "set it per process or use `rocket-ctr launch-local`")
    cluster, task = tf_config["cluster"], tf_config["task"]
    if "ps" in cluster or "evaluator" in cluster:
        raise InputError("--strategy multi-worker takes a cluster of chief/worker tasks only; "
                         "ps and evaluator tasks are not supported")
    has_chief = "chief" in cluster
    workers = name_count(cluster, "chief") + name_count(cluster, "worker")
    index = task["index"] + (1 if has_chief and task["type"] == "worker" else 0)
    chief = task["type"] == "chief" or (not has_chief and task["index"] == 0)
    return TaskInfo(task["type"], task["index"], workers, index, chief)


def _check_strategy(strategy: str) -> None:
    if strategy == "parameter-server":
        raise InputError(PARAMETER_SERVER_UNSUPPORTED)
    if strategy not in STRATEGIES:
        raise InputError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")


ALL_REDUCE_PACK_BYTES = 32 << 20


def make_strategy(strategy: str, environ=None) -> tuple[tf.distribute.Strategy, TaskInfo]:
    """Creates the ``tf.distribute`` strategy named on the command line.

    Args:
        strategy: ``default`` (this process alone) or ``multi-worker`` (``MultiWorkerMirroredStrategy``).
        environ: where ``TF_CONFIG`` is read from (default ``os.environ``).
    Returns:
        ``(strategy, TaskInfo)``.
    Raises:
        InputError: ``parameter-server`` (unsupported, with the reason), an unknown strategy, or a
            missing or malformed TF_CONFIG for ``multi-worker``.
    """
    _check_strategy(strategy)  # before TF_CONFIG: parameter-server is refused whatever the cluster
    tf_config = read_tf_config(environ)
    info = task_info(tf_config, strategy)
    if strategy == "default":
        return tf.distribute.get_strategy(), info
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(tf_config["cluster"]), task_type=info.task_type, task_id=info.task_index,
        rpc_layer="grpc")
    # RING all-reduce over gRPC: the CPU implementation (NCCL is for GPUs). The ~40 dense
    # gradients travel packed in one collective per step, not one round trip each.
    options = tf.distribute.experimental.CommunicationOptions(
        bytes_per_pack=ALL_REDUCE_PACK_BYTES,
        implementation=tf.distribute.experimental.CommunicationImplementation.RING)
    return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver, communication_options=options), info


def broadcast_from_chief(strategy: tf.distribute.Strategy, values, is_chief: bool):
    """The chief's float64 vector ``values`` on every worker (a sum all-reduce where the others
    contribute zeros), so decisions taken from it (early stopping, hint warm-up, divergence) are
    identical on every worker. Every worker must call it at the same point.

    Returns:
        numpy float64 array equal to the chief's ``values``.
    """
    local = np.asarray(values, np.float64) if is_chief else np.zeros(len(values), np.float64)

    @tf.function
    def reduce():  # the tensor is made inside the replica function: the all-reduce needs its device
        return strategy.run(lambda: tf.distribute.get_replica_context().all_reduce("sum", tf.constant(local)))

    return strategy.experimental_local_results(reduce())[0].numpy()
