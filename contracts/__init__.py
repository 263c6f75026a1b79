"""Kalo's message contracts: pydantic v2 models, the envelope and the topic registry."""
