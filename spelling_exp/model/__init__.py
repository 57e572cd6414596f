"""The model side: where weights and tokenizers come from, and the one place prompts are rendered."""
