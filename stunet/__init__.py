"""stunet: Lumiere's Space-Time U-Net text-to-video diffusion model in JAX/Flax."""

__version__ = "0.1.0"
