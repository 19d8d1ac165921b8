"""Variable trees as flat ``{'a/b/c': leaf}`` dicts and back (checkpoints, exports, reports)."""

from __future__ import annotations

from typing import Any, Dict, Mapping


def flatten(tree: Mapping[str, Any], sep: str = '/') -> Dict[str, Any]:
  """``{'a': {'b': x}}`` -> ``{'a/b': x}``; any ``Mapping`` (FrozenDicts too) is a node."""
  out = {}
  for key, value in tree.items():
    if isinstance(value, Mapping):
      out.update({f'{key}{sep}{name}': leaf for name, leaf in flatten(value, sep).items()})
    else:
      out[str(key)] = value
  return out


def unflatten(flat: Mapping[str, Any], sep: str = '/') -> Dict[str, Any]:
  """The inverse of :func:`flatten` (nested plain dicts)."""
  out: Dict[str, Any] = {}
  for name, value in flat.items():
    node = out
    *parents, leaf = name.split(sep)
    for key in parents:
      node = node.setdefault(key, {})
    node[leaf] = value
  return out
