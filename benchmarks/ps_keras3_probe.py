"""What works and what fails with tf.distribute.ParameterServerStrategy over Keras 3 layers.

Why ``rocket-ctr train --strategy parameter-server`` is refused (``rocket_ctr.train.distributed``):
the trainer has no parameter-server path, and this self-contained script keeps the evidence.

Smallest reproduction, in real processes on 127.0.0.1: this process is the chief (coordinator),
it starts 2 ps + 2 worker tasks (this script's ``serve`` mode: a bare ``tf.distribute.Server``),
builds its own ``ParameterServerStrategy``, a Keras 3 ``Embedding(1000, 8)`` + ``Dense(1)`` under
it with a variable partitioner (``FixedShardsPartitioner(2)``), and schedules 20 training steps
through a ``ClusterCoordinator``.

    .venv/bin/python benchmarks/ps_keras3_probe.py keras    # the tape over Keras variables: fails
    .venv/bin/python benchmarks/ps_keras3_probe.py shards   # the tape over their shards: trains
    TF_CONFIG=... benchmarks/ps_keras3_probe.py serve         # one ps/worker task (started by the above)

Findings (TF 2.21, Keras 3, recorded in the README's "Training on a cluster"):
- the embedding's variable is a ``ShardedVariable`` with one part on each ps (partitioning works);
- ``tape.gradient(loss, layer.trainable_variables)`` fails: Keras' TF ``Variable.handle`` is
  ``self.value.handle`` and ``ShardedVariable`` has no handle
  (``AttributeError: 'ShardedVariable' object has no attribute 'handle'``);
- differentiating w.r.t. the shards (``v.value.variables``) and building the Keras optimizer over
  those shards inside ``strategy.scope()`` *before* scheduling trains (loss decreases);
- Keras' ``Embedding`` converts the ``ShardedVariable`` to one tensor, i.e. every step pulls the
  *whole* table from the ps to the worker (a partitioned ``tf.nn.embedding_lookup`` would pull
  only the rows looked up): correct, but it defeats the point for tables that do not fit a worker;
- the optimizer's ``iterations`` counter loses increments under asynchronous steps (< 20 after
  20 steps), which skews Adam's bias correction.
"""
from __future__ import annotations

import atexit
import json
import os
import socket
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

STOP: list = []  # the server processes, killed on exit


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def main(mode: str = "keras", steps: int = 20) -> dict:
    ports = [f"127.0.0.1:{p}" for p in free_ports(5)]
    cluster = {"chief": ports[:1], "worker": ports[1:3], "ps": ports[3:5]}
    children = [subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "serve"],
        env={**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": t, "index": i}})})
        for t in ("worker", "ps") for i in range(2)]
    atexit.register(lambda: [c.kill() for c in children])
    STOP.extend(children)
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(cluster), task_type="chief", task_id=0, rpc_layer="grpc")
    strategy = tf.distribute.ParameterServerStrategy(
        resolver, variable_partitioner=tf.distribute.experimental.partitioners.FixedShardsPartitioner(2))
    coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)
    with strategy.scope():
        embedding, dense = keras.layers.Embedding(1000, 8), keras.layers.Dense(1)
        embedding.build((None,))
        dense.build((None, 8))
        optimizer = keras.optimizers.Adam(0.01)
    table = embedding.embeddings.value
    report = {"embedding": type(table).__name__,
              "parts": [(v.shape.as_list(), v.device) for v in getattr(table, "variables", [table])]}
    variables = embedding.trainable_variables + dense.trainable_variables
    if mode == "shards":
        variables = [part for v in variables for part in getattr(v.value, "variables", [v.value])]
        with strategy.scope():
            optimizer.build(variables)  # slots next to their shards, not created inside a step

    @tf.function
    def step(iterator):
        ids, labels = next(iterator)

        def replica_step(ids, labels):
            with tf.GradientTape() as tape:
                logits = tf.squeeze(dense(embedding(ids)), -1)
                loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels, logits))
            optimizer.apply(tape.gradient(loss, variables), variables)
            return loss
        return strategy.run(replica_step, args=(ids, labels))

    def dataset_fn():
        ids = tf.random.stateless_uniform([256], [1, 2], 0, 1000, tf.int64)
        return tf.data.Dataset.from_tensors((ids, tf.cast(ids % 2, tf.float32))).repeat()

    iterator = iter(coordinator.create_per_worker_dataset(dataset_fn))
    try:
        losses = [coordinator.schedule(step, args=(iterator,)) for _ in range(steps)]
        coordinator.join()
        report["losses"] = [round(float(r.fetch()), 4) for r in losses[::5]]
        report["optimizer_iterations"] = int(optimizer.iterations.numpy())
    except Exception as err:  # noqa: BLE001 (the probe reports whatever fails)
        report["error"] = f"{type(err).__name__}: {str(err).strip().splitlines()[-1].strip()}"
    return report


def serve_forever() -> None:
    """Runs the ps/worker task named by ``TF_CONFIG`` until the process is stopped."""
    config = json.loads(os.environ["TF_CONFIG"])
    server = tf.distribute.Server(tf.train.ClusterSpec(config["cluster"]), job_name=config["task"]["type"],
                                  task_index=config["task"]["index"], protocol="grpc", start=True)
    server.join()


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve_forever()
    result = main(*(sys.argv[1:2] or ["keras"]))
    print(json.dumps(result), flush=True)
    for child in STOP:
        child.kill()
    os._exit(0)  # skip the coordinator's teardown chatter about the killed servers
