"""Care of an unattended chain, one concern a module: content policy, retention, budget, energy, watchdog."""
