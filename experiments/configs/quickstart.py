r"""Quick start: the README's one-command main job (`python -m experiments.main`).

The demo data (16 frames of 32x32 `shapes_video`) with a narrower U-Net than `demo.py`, sized
so that building the data, training the T2I U-Net, inflating it and training the temporal
layers, sampling and evaluating finish in about 15 minutes on 2 CPU cores.

  python -m experiments.main
  python -m experiments.train --config=experiments/configs/quickstart.py --workdir=runs/quickstart
"""

from stunet.config import default_config


def get_config(arg=None):
  del arg
  c = default_config("demo")
  c.model.update(dict(
      channels=16, channel_mult=(1, 2, 2), num_res_blocks=(1, 1, 1),
      attention_levels=(False, False, True), num_heads=(2, 2, 2), mid_num_heads=2,
      norm_groups=8, temporal_factors=(2, 2), temporal_attention_heads=2,
      temporal_attention_depth=1,
      # The pooled caption joins the noise embedding (Imagen / DeepFloyd IF): every ResBlock
      # sees the colour and shape words, not only the cross-attention at the coarsest level.
      text_pooling="attention", text_pooling_heads=2,
      # The temporal layers read the caption and the noise level (SPEC §2, beyond the paper):
      # a T2I trained on single frames of these clips carries no motion words, so text-blind
      # temporal layers cannot follow "left" or "bouncing" (issue: motion 0% without it).
      temporal_text="film+cross_attention"))
  # 8 frames at 8 fps (every other frame of the stored 16 fps clips): the same 1 s of motion
  # at half the video stage's cost; the temporal down-sampling gives 8, 4 and 2 frames.
  c.data.update(dict(frames=8, fps=8))
  # Whole words instead of bytes: a one-layer encoder this small reads "red" or "square" as
  # one token from the start instead of learning to spell (see stunet/text/word_tokenizer.py).
  c.text.update(dict(kind="words_transformer", max_length=32, width=32, depth=1, heads=2))
  c.diffusion.sample_steps = 24
  # Min-SNR-5 loss weighting (Hang et al. 2023) instead of the plain v-MSE: it caps the weight
  # of the nearly clean noise levels, which dominate the plain loss's gradient while teaching
  # the layout, colour and shape of the objects little. On 64 validation captions, same data,
  # steps and seed: T2I step 1500 detected 70% vs 55%, colour 44% vs 32%, present in 54% vs 42%
  # of frames; after the video stage colour 56% vs 34%, present 28% vs 18%
  # (benchmarks/results/quickstart.md).
  c.diffusion.loss_weighting = "min_snr"
  # The noise schedule shifted towards more noise by 2 log(16 / 32) = -1.39 in log-SNR
  # (simple diffusion's resolution shift, Hoogeboom et al. 2023): flat-coloured shapes on a flat
  # background are so redundant that the unshifted cosine schedule leaves their layout readable
  # at most noise levels, so little of training decides where the objects go and what colour
  # they are. 64 validation captions, same steps and seed: T2I step 1500 detected 77% vs 70%,
  # colour 58% vs 44%, count 53% vs 39%; after the video stage detected 89% vs 75%, colour 60%
  # vs 56%, present in 33% vs 28% of frames; a shift to base 8 scored below base 16
  # (benchmarks/results/quickstart.md).
  c.diffusion.shift_base_res = 16.0
  # Ancestral (DDPM) sampling without guidance: on 64 validation captions the T2I stage's
  # images are detected 3x as often as with DDIM at guidance 3 (61% vs 19%; colour 42% vs 16%),
  # and guidance 1 needs no null-text pass, halving the sampling cost. A model this small
  # follows the caption weakly; guidance amplifies its errors into over-saturated, torn
  # blobs that fit no shape (benchmarks/results/quickstart.md).
  c.diffusion.sampler = "ddpm"
  c.diffusion.guidance = 1.0
  c.optim.update(dict(num_steps=400, warmup_steps=20, learning_rate=2e-3, ema_decay=0.99))
  # T2I: batch 16. At equal wall-clock, batch 16 x 2000 steps beat batch 32 x 1000 on
  # validation captions (detection 72% vs 61%, colour 50% vs 42%); 1500 steps keep the whole
  # job near 11 minutes (the committed run's T2I curve is still rising there:
  # benchmarks/results/learning_curve_quickstart_t2i.md).
  c.stage.t2i.update(dict(num_steps=1500, global_batch_size=16))
  # Video: every weight trains (`all`, beyond the paper's frozen T2I): at this budget the
  # spatial layers keep improving on the video stage's 64 frames per step (validation colour
  # 47% vs 33%, detection 64% vs 53% after 300 steps).
  c.stage.video.update(dict(num_steps=300, global_batch_size=8, trainable="all"))
  # Every 100th step is kept, so `benchmarks.learning_curve` can draw the run's curve.
  c.ckpt.update(dict(every_steps=100, keep_every=100))
  c.log.every_steps = 10
  c.log.num_samples = 0
  return c
