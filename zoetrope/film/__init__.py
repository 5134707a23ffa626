"""Films: interpolation math, the latent walk with its frame cache, the painter call width, the encoder, and
the render pipeline that ties a scene script to an mp4."""
