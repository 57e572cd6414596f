"""Position / count questions on hold-out words, answered by a backend, parsed and scored.

``recipe.evaluate`` is the evaluation recipe; ``backends`` turn prompts into replies.
"""
