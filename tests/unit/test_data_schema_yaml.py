"""A schema file with a key pandera would skip is refused, naming the key, not run as is."""

from __future__ import annotations

import pandas as pd
import pytest

from conveyor.core.errors import InvalidArgumentError
from conveyor.data.validation import infer_schema, schema_from_yaml, schema_to_yaml

FRAME = pd.DataFrame({"age": list(range(20)), "plan": ["basic", "pro"] * 10})


def _written() -> str:
    return schema_to_yaml(infer_schema(FRAME))


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "it is empty"),
        ("- age\n- plan\n", "not a mapping"),
        ("name: only a name\n", "would check nothing"),
        ("colums:\n  age:\n    dtype: int64\n", "unknown key 'colums' (did you mean 'columns'?)"),
        ("columns:\n  age:\n    in_rnage: {min_value: 0, max_value: 9}\n", "'in_range'"),
        ("columns:\n  age:\n    checks:\n      less_thn: 5\n", "unknown check 'less_thn'"),
        ("columns: {}\nchecks:\n  row_cont: {min_rows: 1, max_rows: 9}\n", "'row_cont'"),
        ("columns: [unclosed\n", "not valid YAML"),
        ("columns:\n  a:\n    checks: {}\n    in_range: {max_value: 11}\n", "beside `checks:`"),
        ("index:\n- dtype: int64\n  nulable: false\n", "'nullable'"),
        # pandera takes any value but false for true: a typo would allow nulls, silently.
        ("columns:\n  age:\n    nullable: flase\n", "nullable: 'flase'; expected true or"),
        ("columns:\n  age:\n    unique: 'no'\n", "unique: 'no'; expected true or false"),
        ("columns: {}\ncoerce: 0\n", "the schema has coerce: 0; expected"),
        ("columns: {}\nstrict: filtr\n", "expected true, false or filter"),
    ],
)
def test_a_schema_that_would_check_less_than_written_is_refused(text: str, says: str) -> None:
    with pytest.raises(InvalidArgumentError, match=r"Cannot read s\.yaml") as caught:
        schema_from_yaml(text, source="s.yaml")
    assert says in caught.value.message


def test_a_written_schema_and_hand_added_checks_still_load() -> None:
    assert set(schema_from_yaml(_written()).columns) == {"age", "plan"}
    edited = "columns:\n  plan:\n    dtype: str\n    str_length: {min_value: 3}\n"
    schema = schema_from_yaml(edited)
    assert [c.name for c in schema.columns["plan"].checks] == ["str_length"]
    listed = "columns:\n  age:\n    checks:\n      ge: 0\n      le: 30\n"
    assert len(schema_from_yaml(listed).columns["age"].checks) == 2


@pytest.mark.parametrize(
    "text",
    [
        "index:\n- dtype: int64\n",
        "dtype: int64\n",
        "unique: [a, b]\nname: pairs\n",
        "strict: true\ncolumns: {}\n",
        "strict: filter\ncolumns:\n  a:\n    nullable: no\n    unique: yes\n",
        "columns:\n- name: a\n  dtype: int64\n",  # columns as a list, which pandera reads
    ],
)
def test_a_schema_of_rules_other_than_columns_loads(text: str) -> None:
    schema_from_yaml(text, source="s.yaml")
