"""Evaluation: metrics, detectors and visualisations (SPEC §1, §4, §6).

Files:
  detector.py        analytic `shapes_video` detector: palette segmentation, shape/size/centroid
                     per frame, per-colour tracks.
  motion.py          motion of a track: direction, speed class, bounce period, 'none' if static.
  caption_parser.py  caption -> expected objects, using the dataset's own templates.
  metrics.py         `evaluate_clips` (attribute / all-correct accuracy, temporal consistency,
                     FVD-shapes, seams) and `metrics_to_markdown`.
  feature_net.py     small 3-D conv net trained on shapes_video attributes (FVD-shapes features).
  frechet.py         Fréchet distance on features; hook for any clips -> features callable.
  seams.py           frame differences at temporal-window boundaries vs elsewhere.
  xt_slice.py        XT slices of a clip.
  gallery.py         the run gallery page.
  run_evaluation.py  `evaluate_run`: sample a split's captions from a run, write the metrics
                     (behind experiments/evaluate.py).
  learning_curve.py  accuracy against training time from a run's saved checkpoints.
  ablation.py        the temporal down-sampling variants and their compiled-step analysis:
                     parameters, XLA's FLOPs and peak memory vs T, step time.
  ablation_report.py the ablation's record (analysis.jsonl) and its tables and plots; the
                     sweep that fills it is `stunet.apps.ablation_sweep`.
"""
