"""Checks shared by the importer parity sweeps: a generated case set is reproducible and
reaches every value of the options it claims to cover."""


def assert_reproducible_and_covering(make_cases, expected: dict[str, set]) -> dict[str, set]:
  """`make_cases()` twice gives the same configs, and every `expected` option value occurs in
  some case's `features`; returns every option's values seen, for further checks."""
  cases = make_cases()
  assert [c.kwargs for c in cases] == [c.kwargs for c in make_cases()]
  seen: dict[str, set] = {}
  for case in cases:
    for option, value in case.features:
      seen.setdefault(option, set()).add(value)
  for option, values in expected.items():
    assert values <= seen.get(option, set()), (option, values - seen.get(option, set()))
  return seen
