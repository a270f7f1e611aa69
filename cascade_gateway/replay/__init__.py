"""Replay recorded answers through the real cascade, and calibrate its threshold on them.

data.py       recorded answers (JSONL), graded `correct` or `score`; the train/validation split
provider.py   ReplayProvider: answers each tier with what its model once said
run.py        replay through the engine; figures at any threshold (the curve)
calibrate.py  pick the threshold that meets a target; write it into a cascade config
plot.py       the cost-quality picture (matplotlib, optional)
cli.py        `cascade-gateway replay` and `cascade-gateway calibrate`
"""
