"""Temporary package marker (h12); replaced by the LLM track's own __init__ at merge."""
