"""Losses: the tasks' classification losses and the AVS objective."""
