"""Training: stages, sharded state, the pure train step, the loop, checkpoints, logging.

config.py      defaults and validation of optim / mesh / ckpt / log / sample / stage sections
stages.py      the stage registry (t2i, video): model, data modality, trainable groups, parent
build.py       one stage's modules, parameter labels, optimiser and boxed initialiser
optimizer.py   AdamW + warmup/cosine + clipping; frozen leaves get no state and no update
state.py       TrainState {step, params, opt_state, ema_params}: EMA of trainable leaves only
step.py        the pure train_step and its jit with shardings and donation
checkpoint.py  orbax CheckpointManager: state + data iterator + meta
restore.py     a saved state or its weights back onto a mesh (older checkpoint layouts too)
compat.py      which config changes a resume may make
metrics.py     metrics.jsonl, TensorBoard events, progress bar
samples.py     EMA samples -> PNG grid and MP4/GIF
preemption.py  SIGTERM -> checkpoint at the next step boundary
loop.py        the training loop over config.stages
"""
