"""The studies' results page says what its records say: every table is the rendering of
the record the study's command wrote (no hand-copied figures)."""

import os
import re

import pytest

from avslowfast_jax.studies import results


@pytest.mark.parametrize('path', results.PAGES, ids=os.path.basename)
def test_every_table_is_the_rendering_of_its_record(path):
  with open(path) as f:
    page = f.read()
  names = re.findall(r'<!-- table: (\w+) -->', page)
  assert names, f'{path} has no rendered table'
  for name in names:
    assert os.path.isfile(results.record_path(name)), name
    assert results.read_record(name).get('environment'), f'{name}: environment not recorded'
  assert results.render(page) == page, 'run python -m avslowfast_jax.studies.results'


def test_a_changed_record_changes_the_page(tmp_path, monkeypatch):
  """The check could fail: a figure edited in a record no longer matches the page."""
  with open(results.PAGE) as f:
    page = f.read()
  names = re.findall(r'<!-- table: (\w+) -->', page)
  for other in names[1:]:  # the other tables' records as they are
    (tmp_path / f'{other}.json').write_text(results.json.dumps(results.read_record(other)))
  name = names[0]
  record = results.read_record(name)
  edited = tmp_path / f'{name}.json'
  text = results.json.dumps(record)
  # Every figure of a record is a fraction; scaling them all moves every rendered cell.
  text = re.sub(r'(?<=": )0\.(\d)', lambda m: '0.0' + m.group(1), text)
  edited.write_text(text)
  monkeypatch.setattr(results, 'RECORDS', str(tmp_path))
  assert results.render(page) != page
