"""Transports: how a caller's audio reaches the turn detector and how events go back."""
