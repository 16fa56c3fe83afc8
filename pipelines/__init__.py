"""Batch jobs and the ``rocket-ctr`` command line (installed as ``rocket_ctr.pipelines``)."""
