"""Drivers: whole workflows on top of every other package (nothing below imports them).

main_job.py        the quick-start main job: data, training, samples, metrics
ablation_sweep.py  the temporal down-sampling sweep: analysis of every variant, optional
                   training and evaluation (behind experiments/ablate.py)
aot.py             the ahead-of-time fit check: a config's train / sampling step compiled for a
                   TPU topology from this host, with memory, FLOPs and collectives
"""
