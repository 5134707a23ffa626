"""Zoetrope: an endless caption <-> paint loop and prompt-scripted films on real diffusion pipelines."""

__version__ = "0.7.0"
