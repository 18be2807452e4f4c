"""The LLM track: a tiny GPT on the standard library's docstrings, and the tools to compress it.

``corpus``    the docstrings corpus (character level, train / val / calib splits, cached)
``gpt``       a readable decoder-only transformer (``GPT``, ``GPTConfig``, ``KVCache``)
``eval``      perplexity, calibration inputs through forward hooks, ``H = 2·XᵀX/n``
``train``     training loop, safetensors checkpoints, the shipped teacher (``load_teacher``)
``quantize``  LLM weight quantization (group-wise RTN, GPTQ, AWQ, SmoothQuant) and KV-cache quantization
``prune``     LLM pruning (Wanda, SparseGPT, N:M masks, head and neuron removal)
``distill``   token-level distillation losses: reverse KL, generalized JSD, top-k teacher logits
``speculative`` speculative sampling: the acceptance rule, the decoding loop, and its measurement
``students``  notebook 14's distilled students: the recipe, training, the shipped files (``load_students``)

Import the submodules directly (``from kdcore.llm.gpt import GPT``); this package imports nothing eagerly.
"""
