"""TF Serving clients, the test server and the latency benchmark (installed as ``rocket_ctr.serving``)."""
