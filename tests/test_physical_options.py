"""Interface options as data (IEC 62056-21 §4, FACTS.md §6) and computed verdicts."""
import math

import pytest

from rig.measurement import Measurement
from rig.physical.options import CURRENT_LOOP, OPTICAL, OPTIONS, VOLTAGE, get_option


def test_measurement_verdict_is_computed_from_limits():
    assert Measurement("x", 5, "V", 3, 15).verdict == "pass"
    assert Measurement("x", 2.9, "V", 3, 15).verdict == "fail"
    assert Measurement("x", 15.1, "V", 3, 15).verdict == "fail"
    assert Measurement("x", 15, "V", 3, 15).verdict == "pass"        # inclusive
    assert Measurement("x", 1e9, "V").verdict == "info"
    assert Measurement("x", None, "V", None, 1).verdict == "fail"    # not measured
    assert Measurement("x", math.nan, "V", 0, None).verdict == "fail"
    with pytest.raises(TypeError):
        Measurement("x", 1, "V", 0, 2, "pass", "fail")              # no verdict by hand
    with pytest.raises(Exception):
        Measurement("x", 1).value = 2                                # frozen


def test_the_three_options_carry_the_standard_numbers():
    assert [o.number for o in OPTIONS.values()] == [1, 2, 3]
    assert OPTICAL.unit == "µW/cm²" and CURRENT_LOOP.unit == "mA" and VOLTAGE.unit == "V"
    assert (OPTICAL.tx_space.low, OPTICAL.tx_space.high, OPTICAL.tx_mark.high) == (500, 5000, 10)
    assert (OPTICAL.rx_space.low, OPTICAL.rx_mark.high) == (200, 20)
    assert (CURRENT_LOOP.tx_mark.low, CURRENT_LOOP.tx_space.high) == (11, 2.5)
    assert (CURRENT_LOOP.rx_mark.low, CURRENT_LOOP.rx_space.high) == (9, 3)
    assert CURRENT_LOOP.absolute_max["loop_current"].high == 30
    assert CURRENT_LOOP.absolute_max["open_circuit_voltage"].high == 30
    assert (VOLTAGE.tx_mark.low, VOLTAGE.tx_mark.high) == (-15, -3)
    assert (VOLTAGE.tx_space.low, VOLTAGE.tx_space.high) == (3, 15)


def test_polarity_and_idle():
    # light ON = space, idle = light OFF; current flowing = mark = idle; V.28 mark negative
    assert not OPTICAL.mark_is_high and CURRENT_LOOP.mark_is_high and not VOLTAGE.mark_is_high
    assert all(o.idle == "mark" for o in OPTIONS.values())
    assert OPTICAL.receiver_thresholds() == (20, 200)
    assert CURRENT_LOOP.receiver_thresholds() == (3, 9)
    assert VOLTAGE.receiver_thresholds() == (-3, 3)


def test_every_limit_says_where_it_comes_from():
    for o in OPTIONS.values():
        for name in ("mark_level", "space_level", "rise_time", "fall_time", "baud_error", "jitter_rms",
                     "jitter_peak", "glitches", "break_length", "bit_width_min", "bit_width_max"):
            assert name in o.limits, (o.name, name)
        for name, lim in list(o.limits.items()) + list(o.absolute_max.items()):
            assert lim.basis in ("IEC 62056-21 §4", "IEC 62056-21 §5", "assumed"), (o.name, name)
        # timing limits are not in IEC 62056-21: they must be labelled assumed
        for name in ("rise_time", "fall_time", "baud_error", "jitter_rms", "jitter_peak", "glitches"):
            assert o.limits[name].basis == "assumed"
        assert o.limits["mark_level"].basis == "IEC 62056-21 §4"


def test_option_measure_uses_its_limits():
    assert CURRENT_LOOP.measure("mark_level", 20.0).verdict == "pass"
    assert CURRENT_LOOP.measure("mark_level", 10.0).verdict == "fail"
    assert OPTICAL.measure("space_level", 450.0).verdict == "fail"
    assert VOLTAGE.measure("space_level", 12.0).verdict == "pass"
    assert VOLTAGE.measure("baud", 9600).verdict == "info"


@pytest.mark.parametrize("key,name", [("optical", "optical"), (2, "current-loop"), ("3", "voltage"),
                                      ("current_loop", "current-loop"), ("V.28", "voltage")])
def test_get_option(key, name):
    assert get_option(key).name == name


def test_get_option_unknown():
    with pytest.raises(ValueError, match="unknown interface option"):
        get_option("carrier-pigeon")
