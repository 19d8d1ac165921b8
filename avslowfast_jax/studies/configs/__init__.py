"""Configs of the synthetic-data studies, loaded by path like every experiment config."""
