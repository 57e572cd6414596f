"""LoRA training on spelling examples: dataset order, model setup, trainer, checkpoints.

``recipe.train`` is the training recipe (setup -> train -> save), with its cache, for one
``job.TrainJob``; ``isolation`` runs it in a fresh process for unsloth.
"""
