"""Training: folder datasets, one engine, optimizers and schedules, metrics and reports.

Entry points: `visiontool.train.engine.train(TrainConfig)` and `visiontool.train.validate.validate`.
"""
