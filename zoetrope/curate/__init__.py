"""Curating logged chains: verify, fork, lineage, playback, similarity, the inspect report. Nothing here
writes into the chain it reads."""
