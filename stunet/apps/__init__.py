"""Applications of the video model (SPEC §5).

masks.py                 conditioning video + mask builders (i2v, inpainting, outpainting,
                         cinemagraph), random training tasks, the 7-channel model input
conditional_sampling.py  sampling with known pixels through the 7-channel model
expand_channels.py       zero-initialised conditioning input channels for fine-tuning
stylize.py               spatial weight interpolation with a style-tuned T2I model
sdedit.py                video-to-video editing (SDEdit)
ssr.py                   SSR conditioning: upsampled, noise-augmented low-resolution clip
cascade.py               base -> SSR upsampling with temporal MultiDiffusion
keyframes_tsr.py         the keyframes + temporal super-resolution baseline (SPEC §1): keyframe
                         layout, the keyframe model's config, filling in between keyframes
inputs.py                reading the user's images, videos and masks at the model's size
sample_run.py            sampling a trained run: every mode, style, cascade, gallery
main_job.py              the quick-start main job: data, training, samples, metrics
"""
