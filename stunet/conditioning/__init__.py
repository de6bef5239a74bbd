"""Per-task conditioning below training (SPEC §5): what a conditioned stage is trained on
and sampled with, without knowing about training loops or drivers.

masks.py                 conditioning video + mask builders (i2v, inpainting, outpainting,
                         cinemagraph), random training tasks, the 7-channel model input
conditional_sampling.py  sampling with known pixels through the 7-channel model
expand_channels.py       zero-initialised conditioning input channels for fine-tuning
stylize.py               spatial weight interpolation with a style-tuned T2I model
style_image.py           the style-tuning stage's image, as a one-example dataset
sdedit.py                video-to-video editing (SDEdit)
ssr.py                   SSR conditioning: upsampled, noise-augmented low-resolution clip
keyframes_tsr.py         the keyframes + temporal super-resolution baseline (SPEC §1): keyframe
                         layout, the keyframe model's config, filling in between keyframes
inputs.py                reading the user's images, videos and masks at the model's size
"""
