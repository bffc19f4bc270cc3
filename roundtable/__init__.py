"""roundtable: controlled experiments on groups of LLMs talking together."""

__version__ = "0.1.0"
