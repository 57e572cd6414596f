"""Bytes on disk: atomic writes, canonical JSON, hashing, and the content-addressed cache."""
