"""Studies on the built-in synthetic dataset: the quickstart, the small-scale ablations and
the self-supervised evidence, with their configs (``studies/configs/``) and their results
page (``studies/results.md``).

Nothing else in the project imports this package: its tuned constants and configs serve
these studies alone.
"""
