"""The two stages and their models: loading (the only code that loads weights), the tiny builder, Captioner,
Painter, per-item kernels, and the Protocols that the fakes also satisfy."""
