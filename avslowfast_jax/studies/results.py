r"""The results page's tables, rendered from the records the studies wrote.

  # after a study's command, keep what it wrote as the page's record, and re-render
  python -m avslowfast_jax.studies.results --record quickstart /tmp/qs0/summary.json \
      /tmp/qs1/summary.json /tmp/qs2/summary.json
  python -m avslowfast_jax.studies.results --record ablate /tmp/ablate/ablate.json
  python -m avslowfast_jax.studies.results --record evidence /tmp/ssl_evidence/evidence.json
  python -m avslowfast_jax.studies.results            # re-render every table from the records
  python -m avslowfast_jax.studies.results --check    # exit 1 if the page differs

Each table of ``results.md`` (and the README's summary of the quickstart) sits
between ``<!-- table: NAME -->`` and ``<!-- end table -->`` and is what
:func:`render` makes of ``records/NAME.json``: the page holds no hand-copied figure, and
tests/test_results_page.py checks that it says what the records say. A record
keeps the study's own output and the environment that produced it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Callable, Dict, Sequence

import numpy as np

from avslowfast_jax.studies.provenance import environment
from data_pipelines import errors
from data_pipelines.errors import UserError

HERE = os.path.dirname(os.path.abspath(__file__))
PAGE = os.path.join(HERE, 'results.md')
# Every page with rendered tables: the results page and the README's summary.
PAGES = (PAGE, os.path.join(os.path.dirname(os.path.dirname(HERE)), 'README.md'))
RECORDS = os.path.join(HERE, 'records')
_TABLE = re.compile(r'(<!-- table: (\w+) -->\n)(.*?)(<!-- end table -->)', re.S)

MODELS = (('avslowfast', 'AVSlowFast'), ('slowfast', 'SlowFast (visual only)'),
          ('audio', 'Audio only'))
GROUPS = (('visual', 'visual classes'), ('audio', 'audio classes'),
          ('audiovisual', 'sync classes'))


def _mean_std(values: Sequence[float]) -> str:
  values = 100 * np.asarray(values, np.float64)
  std = f' ± {values.std(ddof=1):.1f}' if len(values) > 1 else ''
  return f'{values.mean():.1f}{std}'


def quickstart_table(record: dict) -> str:
  """Validation top-1 of the three models, and of each class group, over the seeds."""
  runs = record['runs']
  seeds = ', '.join(str(r['seed']) for r in runs)
  lines = ['| model | top-1 | ' + ' | '.join(t for _, t in GROUPS) + ' |',
           '|---|---:|' + '---:|' * len(GROUPS)]
  for key, title in MODELS:
    if not all(key in r['results'] for r in runs):
      continue
    cells = [_mean_std([r['results'][key]['top1'] for r in runs])]
    for group, _ in GROUPS:
      cells.append(_mean_std([r['modality_groups'][group]['mean'][key] for r in runs]))
    lines.append(f'| {title} | ' + ' | '.join(cells) + ' |')
  verdicts = []
  for group, rival in (('visual', 'slowfast'), ('audio', 'audio')):
    held = sum(bool(r['modality_groups'][group]['avslowfast_at_least'].get(rival))
               for r in runs)
    verdicts.append(f'AVSlowFast at least as accurate as {dict(MODELS)[rival]} on every '
                    f'{group} class: {held} of {len(runs)} seeds')
  minutes = [r['minutes'] for r in runs]
  return '\n'.join(lines) + (
      f'\n\n(%, mean ± sample standard deviation over seeds {seeds}.) '
      + '; '.join(verdicts) + f'. Each run took {min(minutes):.1f}-{max(minutes):.1f} '
      'minutes (the summary\'s `minutes`).\n')


def ablate_table(record: dict) -> str:
  from avslowfast_jax.studies import ablate  # pylint: disable=import-outside-toplevel
  return ablate.markdown(record['studies']) + '\n'


def evidence_table(record: dict) -> str:
  """The self-supervised evidence: probe top-1 of each backbone over the seeds, the goal."""
  from avslowfast_jax.studies import ssl_evidence  # pylint: disable=import-outside-toplevel
  return ssl_evidence.evidence_markdown(record) + '\n'


RENDERERS: Dict[str, Callable[[dict], str]] = {
    'quickstart': quickstart_table,
    'ablate': ablate_table,
    'evidence': evidence_table,
}


def record_path(name: str) -> str:
  return os.path.join(RECORDS, f'{name}.json')


def read_record(name: str) -> dict:
  path = record_path(name)
  if not os.path.isfile(path):
    raise UserError(f'{path}: no such record; run the study, then python -m '
                    f'avslowfast_jax.studies.results --record {name} FILE...')
  with open(path) as f:
    return json.load(f)


def render(page: str) -> str:
  """``page`` with every table replaced by the rendering of its record."""

  def table(match):
    name = match.group(2)
    if name not in RENDERERS:
      raise UserError(f'no renderer for the table {name!r}; expected one of '
                      f'{sorted(RENDERERS)}')
    footer = (f'\n<sub>Record: `avslowfast_jax/studies/records/{name}.json`, '
              f'{_environment_line(read_record(name))}</sub>\n')
    return match.group(1) + RENDERERS[name](read_record(name)) + footer + match.group(4)

  return _TABLE.sub(table, page)


def _environment_line(record: dict) -> str:
  env = record.get('environment')
  if not env:
    return 'environment not recorded'
  v = env['versions']
  libs = ', '.join(f'{k} {v[k]}' for k in ('jax', 'flax', 'optax', 'tensorflow') if v.get(k))
  return f'{libs}; Python {env["python"]}, {env["cpu_count"]} CPU cores ({env["machine"]})'


def record(name: str, paths: Sequence[str]) -> str:
  """Writes the record of ``name`` from a study's output files; returns its path."""
  outputs = []
  for path in paths:
    if not os.path.isfile(path):
      raise UserError(f'{path}: no such file (a study writes it into its workdir)')
    with open(path) as f:
      outputs.append(json.load(f))
  if name == 'quickstart':
    runs = sorted(outputs, key=lambda s: s.get('seed', 0))
    data = {'runs': runs}
  elif len(outputs) == 1:
    data = dict(outputs[0])
  else:
    raise UserError(f'--record {name}: one file expected, got {len(outputs)}')
  # The study's own account of where it ran, where it wrote one; else this machine's.
  data.setdefault('environment', environment())
  os.makedirs(RECORDS, exist_ok=True)
  with open(record_path(name), 'w') as f:
    json.dump(data, f, indent=1, sort_keys=True)
  return record_path(name)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m avslowfast_jax.studies.results',
                                   description=__doc__.split('\n\n')[0])
  parser.add_argument('--record', nargs='+', metavar=('NAME', 'FILE'),
                      help=f'NAME ({", ".join(sorted(RENDERERS))}) and the JSON files of '
                      'its study to keep as the record')
  parser.add_argument('--check', action='store_true',
                      help='exit 1 if a page differs from its records\' rendering')
  args = parser.parse_args(argv)
  if args.record:
    name, paths = args.record[0], args.record[1:]
    if name not in RENDERERS or not paths:
      parser.error(f'--record NAME FILE...: NAME one of {sorted(RENDERERS)}')
    print(f'wrote {record(name, paths)}')
  stale = []
  for path in PAGES:
    with open(path) as f:
      page = f.read()
    rendered = render(page)
    if rendered == page:
      continue
    if args.check:
      stale.append(path)
    else:
      with open(path, 'w') as f:
        f.write(rendered)
      print(f'rewrote {path}')
  if stale:
    print(f'{", ".join(stale)} differ from the records: run python -m '
          'avslowfast_jax.studies.results', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  errors.run(main)
