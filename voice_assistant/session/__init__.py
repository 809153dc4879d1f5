"""One conversation per session: turns in, replies out, everything stored."""
