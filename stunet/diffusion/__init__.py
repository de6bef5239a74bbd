"""Continuous-time Gaussian diffusion in pixel space (SPEC §3).

schedules.py         cosine log-SNR schedule, resolution shift, alpha/sigma, noise_cond
parameterization.py  v / eps / x0 targets and exact conversions
loss.py              per-example training loss with SNR weightings
guidance.py          text dropout, null text, classifier-free guided prediction
thresholding.py      static clipping and Imagen's dynamic thresholding
samplers.py          DDIM and DDPM ancestral samplers (jittable, SDEdit start)
config.py            the ``diffusion`` config section and its validation
"""
