"""Training batches of one style image for the `t2i_style` stage (SPEC §5, StyleDrop-like).

Every example is the same image (resized to ``data.resolution``) with the caption holding the
style token (``stage.t2i_style.caption``). The iterator is a grain iterator, so its (trivial)
state is checkpointed beside the model like the main pipeline's.
"""

from __future__ import annotations

import grain
import jax
import ml_collections
import numpy as np

from stunet.conditioning import inputs as inputs_lib
from stunet.data import global_batch


def make_style_iterator(config: ml_collections.ConfigDict, *, mesh: jax.sharding.Mesh,
                        tokenizer) -> grain.DatasetIterator:
  """Batches `{'image' uint8 [b h w 3], 'caption', 'text_ids', 'text_mask'}` as global arrays."""
  s = config.stage.t2i_style
  resolution = config.data.resolution
  image = inputs_lib.read_image(s.image, resolution)
  pixels = np.round((image + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
  caption = str(s.caption)
  process_count = jax.process_count()
  local_batch = global_batch.check_batch_size(config.data.global_batch_size, process_count,
                                              mesh, config.data.batch_axes)
  sharding = global_batch.batch_sharding(mesh, config.data.batch_axes)

  def finalize(batch):
    ids, mask = tokenizer(list(batch["caption"]))
    batch["text_ids"] = np.asarray(ids, np.int32)
    batch["text_mask"] = np.asarray(mask, bool)
    return global_batch.to_global(batch, sharding, process_count)

  ds = (grain.MapDataset.range(1).repeat()
        .map(lambda _: {"image": pixels, "caption": caption})
        .to_iter_dataset().batch(local_batch).map(finalize))
  return iter(ds)
