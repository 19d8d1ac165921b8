"""Evaluation metrics (numpy): per-video accuracy and mAP, and AVA's frame mAP."""
