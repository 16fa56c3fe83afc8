"""The training policies, one object each, called by the loop in ``rocket_ctr.train.trainer`` through
Keras' ``Callback`` interface (every worker calls them; only the chief writes files):

* ``hint_warmup.HintWarmup``: when the hint starts (the booster leads on validation) and its ramp.
* ``early_stopping.EarlyStopping``: the best validation epoch, stopping, restoring its weights.
* ``intercept_refit.InterceptRefit``: after training, each tower's intercept (and slope: Platt scaling) fitted
  on the validation rows.
* ``recorder.RunRecorder``: history.json, metrics.json, curves.png and the weak-booster warning.
* ``tensorboard_logs.TensorBoardLogs``: training scalars and per-epoch validation/eval summaries.
"""
