"""The loop: Chain (owns a step: attempt, accept), the chain log (sole owner of chain.jsonl and the PNG
provenance chunks), the runner that keeps a chain alive, K chains at once, and care/ for unattended weeks."""
