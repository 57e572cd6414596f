"""Training data and hold-out words: English tokens -> spelling examples; word list -> hold-out splits.

``build.prepare_data`` is the data recipe; the other modules are its parts.
"""
