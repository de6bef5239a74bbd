"""Drivers: whole workflows on top of every other package (nothing below imports them).

sample_run.py  sampling a trained run: every mode, style, cascade, gallery
cascade.py     base -> SSR upsampling with temporal MultiDiffusion
main_job.py    the quick-start main job: data, training, samples, metrics
aot.py         the ahead-of-time fit check: a config's train / sampling step compiled for a
               TPU topology from this host, with memory, FLOPs and collectives
"""
