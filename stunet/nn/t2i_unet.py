"""The pixel-space, Imagen-style text-to-image U-Net (SPEC §2): STUNet without temporal layers.

It takes images `b h w c`, or videos `b t h w c` whose frames it denoises independently (the
T2I model "applied per frame", the reference point of inflation). Its parameter tree is the
spatial part of the STUNet's, so `stunet.nn.inflate.inflate` can copy it across unchanged.
"""

from stunet.nn.stunet import STUNet


class T2IUNet(STUNet):
  """`STUNet` with `temporal=False`; see `STUNet.__call__` for inputs."""

  temporal: bool = False
