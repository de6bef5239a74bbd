"""Data: TFDS builders (`shapes_video`, `video_folder`) and the grain training pipeline.

Entry points: `config.data_config(variant)` for the ``data`` config section and
`pipeline.make_train_iterator(config.data, mesh=..., tokenizer=...)` for batches.
`video_write` and `contact_sheet` write clips and frame grids (GIF / MP4 / PNG).
"""
