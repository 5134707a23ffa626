"""Settings: pydantic schemas of loop configs, scene scripts and film files, and the plain data a model call
takes. Torch-free, so `check`, scene parsing and the gallery server never load a framework."""
