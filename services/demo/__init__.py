"""The demo: a generated sample month through the real services, and what happened to it."""
