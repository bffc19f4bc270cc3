"""Alembic revision scripts, one per schema change, named ``NNNN_<slug>.py``."""
