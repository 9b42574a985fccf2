"""Reading result documents back: the field checks of rcert.results.schema."""

from __future__ import annotations

import math

import pytest

from rcert.errors import RcertError
from rcert.results import schema


@pytest.mark.parametrize(("value", "expected"), [
    (0.5, 0.5), (3, 3.0), ("inf", math.inf), ("-inf", -math.inf),
])
def test_number_takes_json_numbers_and_the_strings_rcert_writes(value, expected):
    assert schema.number(value, "r.json", ("a",)) == expected
    assert math.isnan(schema.number("nan", "r.json", ("a",)))


@pytest.mark.parametrize(("value", "shown"), [
    (True, "True"), ("1.5", "'1.5'"), (None, "None"), ([1], r"\[1\]"), (10**400, r"1000.*\.\.\."),
])
def test_number_refuses_anything_else_naming_the_field(value, shown):
    with pytest.raises(RcertError, match=rf"^r\.json: a\.b must be a number, got {shown}; fix$"):
        schema.number(value, "r.json", ("a", "b"), "fix")


def test_lookup_names_the_first_step_that_is_missing_or_no_object():
    doc = {"a": {"b": [1]}}
    assert schema.lookup(doc, ("a", "b"), "r.json") == [1]
    with pytest.raises(RcertError, match=r"^r\.json: a\.c is missing; fix$"):
        schema.lookup(doc, ("a", "c"), "r.json", "fix")
    with pytest.raises(RcertError, match=r"^r\.json: a\.b must be an object, got \[1\]$"):
        schema.lookup(doc, ("a", "b", "c"), "r.json")
    with pytest.raises(RcertError, match=r"^r\.json must be an object, got 3$"):
        schema.lookup(3, ("a",), "r.json")


def test_check_report_restores_each_models_numbers():
    result = {"schema_version": 1, "kind": "margin", "inputs": [{"bound": "inf"}],
              "summary": {"mean": "nan"}}
    doc = schema.check_report({"schema_version": 1, "kind": "report",
                               "models": {"m": result}}, "r.json")
    checked = doc["models"]["m"]
    assert checked["inputs"] == [{"bound": math.inf}] and math.isnan(checked["summary"]["mean"])
    assert result["inputs"] == [{"bound": "inf"}]  # the document read is left as it was
