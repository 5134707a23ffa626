"""Films: interpolation math, the latent walk with its frame cache, the painter call width, the timeline (shots
and .srt cues), the encoder, and the render pipeline that ties a scene script to an mp4."""
