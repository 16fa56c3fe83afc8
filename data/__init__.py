"""Synthetic click-log generator and small sample data (installed as ``rocket_ctr.datagen``)."""
