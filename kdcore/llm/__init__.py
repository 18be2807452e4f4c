"""kdcore.llm: a tiny GPT and the LLM compression methods of notebooks 12-14.

Placeholder created on branch h13 before the foundation (issue 11) was merged; the foundation's
``__init__`` replaces it at merge.
"""
