"""spelling-exp: does LoRA training on spelling help an LLM answer character position and
count questions about words it never saw in training?"""

__version__ = "0.1.0"
