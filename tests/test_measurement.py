"""rig.measurement: verdicts computed from the limits, how several combine, and how a value is shown
in every report (one formatter: the terminal, plain text, HTML, JUnit and `rig decode` agree)."""
import math

import pytest

from rig.measurement import (ERROR, FAIL, INCOMPLETE, INFO, PASS, SKIPPED, Measurement, combine, combine_finished,
                             format_limits, format_number, format_value, is_ok)


@pytest.mark.parametrize("value, low, high, verdict", [
    (1.0, 0.0, 2.0, PASS), (0.0, 0.0, 2.0, PASS), (2.0, 0.0, 2.0, PASS),     # limits are inclusive
    (-0.1, 0.0, 2.0, FAIL), (2.1, None, 2.0, FAIL), (5, None, None, INFO),
    (None, 0.0, None, FAIL), (math.nan, None, 1.0, FAIL), (None, None, None, INFO)])
def test_the_verdict_comes_from_the_limits(value, low, high, verdict):
    assert Measurement("x", value, "V", low, high).verdict == verdict


def test_error_beats_fail_beats_pass_beats_info():
    assert combine([INFO, PASS, FAIL, ERROR]) == ERROR
    assert combine([INFO, PASS, FAIL]) == FAIL
    assert combine([INFO, PASS]) == PASS
    assert combine([INFO, INFO]) == INFO
    assert combine([]) == PASS


def test_a_clause_with_a_case_not_finished_is_incomplete():
    assert combine_finished([PASS, SKIPPED]) == PASS
    assert combine_finished([PASS, "running"]) == INCOMPLETE
    assert combine_finished([FAIL, None]) == INCOMPLETE


def test_only_pass_and_info_exit_0():
    assert [v for v in (PASS, FAIL, ERROR, INFO, SKIPPED, INCOMPLETE, "stopped", None) if is_ok(v)] == [PASS, INFO]


@pytest.mark.parametrize("v, text", [
    (None, "n/a"), (math.nan, "NaN"), (True, "1"), (1234567, "1234567"), (1234567.0, "1.23457e+06"),
    (0.0, "0"), (0.025, "0.025"), (2.0, "2"), (1 / 3, "0.333333"), ("on", "on")])
def test_a_number_is_shown_with_6_significant_digits_integers_whole(v, text):
    assert format_number(v) == text


def test_value_unit_and_limits():
    assert format_value(0.025, "s") == "0.025 s"
    assert format_value(None, "") == "n/a"
    assert format_limits(0.02, 1.5) == "[0.02 .. 1.5]"
    assert format_limits(None, 3) == "[ .. 3]"
    m = Measurement("tr", 0.025, "s", 0.02, 1.5, "IEC 62056-21 §6.3.14")
    assert m.describe() == "0.025 s [0.02 .. 1.5] pass (IEC 62056-21 §6.3.14)"
    assert Measurement("n", 7).describe() == "7 info"
    assert str(m).split() == ["tr", "0.025", "s", "[0.02", "..", "1.5]", "pass"]
