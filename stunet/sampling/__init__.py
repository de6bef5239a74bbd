"""Sampling a trained run (SPEC §3 samplers, §5 modes): beside `eval` in one layer (evaluation
samples runs; sampling writes the gallery), below the drivers.

options.py        what to sample: `SampleOptions`, `ModeInputs` and the second-run options
                  (`StyleOptions`, `CascadeOptions`, `TSROptions`), `read_prompts`
trained_stage.py  a stage of a workdir ready to sample: its saved config, restored params,
                  compiled samplers kept per process
sample_run.py     `sample_run`: every mode, style, TSR in-filling and SSR upsampling, the
                  written clips and gallery (behind experiments/sample.py)
cascade.py        base -> SSR upsampling with temporal MultiDiffusion
"""
