"""Turn detection: Silero speech probabilities per 32 ms frame -> user turns."""
