"""rig.bench.scpi: the IEEE 488.2 / SCPI-1999 rules the virtual instruments follow, on the real
command trees of instruments/*.yaml, and the load-time check that keeps drivers and trees together."""
import pytest
import yaml

from rig.bench import scpi
from rig.bench.models import ModelError, load_file, load_model


class Inst(scpi.ScpiInstrument):
    def __init__(self, model):
        self.tree = load_model(model).tree
        super().__init__()

    def idn(self):
        return "ACME,X1,0,1"

    def run(self, text: str) -> list[str]:
        return [r.decode() for r in self.execute([u.strip().encode() for u in text.split(";")])]

    def err(self) -> str:
        return self.run("SYST:ERR?")[0].lstrip("+")     # Keysight writes +0


@pytest.fixture
def gen():
    return Inst("keysight-33500b")


def test_short_long_optional_nodes_and_suffix_default(gen):
    gen.run("SOURce1:VOLTage:LEVel:IMMediate:AMPLitude 5")
    assert float(gen.run("SOUR1:VOLT?")[0]) == 5.0
    gen.run("volt 2.5")                                   # [SOURce#] left out: channel 1
    assert float(gen.run(":SOURCE:VOLTAGE:AMPLITUDE?")[0]) == 2.5
    gen.run("SOUR2:FUNC NOISe")
    assert gen.run("SOURce2:FUNCtion?") == ["NOIS"]       # a choice answers in its short form
    assert gen.run("FUNC?") == ["SIN"]
    assert gen.err() == '0,"No error"'


def test_header_paths_across_semicolons(gen):
    # after SOUR1:BURS:NCYC the current node is SOUR1:BURS; a leading ':' goes back to the root
    assert gen.run("SOUR1:BURS:NCYC 7;STAT ON;:OUTP1 ON;SOUR1:BURS:NCYC?;STAT?") == ["+7.000000000000000E+00;1"]
    assert gen.run("OUTPut1?") == ["1"]
    assert gen.err() == '0,"No error"'
    # without the colon the second header is SOUR1:SOUR1:VOLT: undefined, as on a strict instrument
    gen.run("SOUR1:FREQ 1000;SOUR1:VOLT 1")
    assert gen.err().startswith("-113,") and gen.err() == '0,"No error"'
    gen.run("SOUR1:FREQ 1000;:SOUR1:VOLT 1;*CLS;VOLT:OFFS 0.5")   # a common command keeps the node
    assert gen.run(":SOUR1:VOLT?;VOLT:OFFS?") == ["+1.000000000000000E+00;+5.000000000000000E-01"]
    gen.run(":SOUR1:VOLT?;OFFS?")                     # SOUR1:OFFS is no node
    assert gen.err().startswith("-113,")
    assert gen.err() == '0,"No error"'


def test_booleans_numbers_units_min_max_def(gen):
    for word, want in (("ON", "1"), ("OFF", "0"), ("1", "1"), ("0", "0")):
        gen.run(f"OUTP1 {word}")
        assert gen.run("OUTP1?") == [want]
    gen.run("FREQ 2.5 kHz")
    assert float(gen.run("FREQ?")[0]) == 2500.0
    gen.run("FREQ 1.5E+3")
    assert float(gen.run("FREQ?")[0]) == 1500.0
    gen.run("VOLT 250 mV")
    assert float(gen.run("VOLT?")[0]) == 0.25
    gen.run("FREQ MAX")
    assert float(gen.run("FREQ?")[0]) == 30e6
    assert float(gen.run("FREQ? MIN")[0]) == 1e-6
    gen.run("FREQ DEF")
    assert float(gen.run("FREQ?")[0]) == 1000.0
    assert gen.err() == '0,"No error"'


@pytest.mark.parametrize("unit, code", [
    ("BOGus:HEADer 1", -113), ("FREQ twelve", -104), ("FREQ 1e99", -222), ("OUTP1 MAYBE", -224),
    ("FUNC TRIANGLEX", -224), ("SOUR3:FREQ 1", -114), ("FREQ 1 parsecs", -131), ("*RST 5", -108),
    ("SOUR1:DATA:ARB:DAC RIG,#3010abc", -160),
])
def test_standard_error_numbers(gen, unit, code):
    gen.run(unit)
    assert gen.err().startswith(f"{code},")
    assert gen.err() == '0,"No error"'


def test_common_commands(gen):
    assert gen.run("*IDN?") == ["ACME,X1,0,1"]
    assert gen.run("*OPT?") == ["0"] and gen.run("*OPC?") == ["1"]
    gen.run("NOPE")
    assert gen.run("*ESR?") == [str(scpi.ESR_CME)]        # a command error sets CME ...
    assert gen.run("*ESR?") == ["0"]                       # ... and reading clears it
    gen.run("FREQ 5000;*OPC;*WAI;*TRG")
    assert gen.run("*ESR?") == [str(scpi.ESR_OPC)]
    gen.run("NOPE;*CLS")
    assert gen.err() == '0,"No error"'
    gen.run("*RST")
    assert float(gen.run("FREQ?")[0]) == 1000.0


def test_every_setting_of_every_tree_can_be_read_back():
    for name in ("rigol-ds1000z", "keysight-33500b", "rigol-dp832", "keysight-34461a"):
        inst = Inst(name)
        for node in inst.tree.nodes:
            if node.is_setting:
                assert node.queryable, (name, node.spec)
                assert inst._query(node, (1,) * sum(e.suffix for e in node.elements), []) is not None


def test_a_driver_template_outside_the_tree_is_refused_at_load(tmp_path):
    m = load_model("rigol-dp832")
    data = yaml.safe_load(m.path.read_text(encoding="utf-8"))
    data["commands"]["voltage?"] = ":SOURce{ch}:VOLTage:LEVel:NOWhere?"
    p = tmp_path / "dp832-slip.yaml"
    p.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    with pytest.raises(ModelError, match=r"commands\.voltage\?: .*not in the command tree"):
        load_file(p)


def test_blocks_are_pyvisa_blocks():
    assert scpi.block(b"abc") == b"#13abc"
    assert scpi.parse_block(b"#13abc") == b"abc"
    with pytest.raises(scpi.ScpiError):
        scpi.parse_block(b"#15abc")


def test_the_sim_device_settings_come_from_the_command_tree():
    from rig.bench.models import sim_device

    dev = sim_device("rigol-dp832")
    props = {p["setter"]["q"]: p for p in dev["properties"].values() if "setter" in p}
    v = props[":SOURce2:VOLTage {:s}"]                 # the driver's template, the tree's default
    assert v["getter"]["q"] == ":SOURce2:VOLTage?" and v["default"] == "0.000"
    assert props[":OUTPut CH3,{:s}"]["getter"]["q"] == ":OUTPut? CH3"
    assert props[":OUTPut CH3,{:s}"]["default"] == "OFF"
    scope = sim_device("rigol-ds1000z")
    assert {"q": ":RUN"} in scope["dialogues"]       # a fixed command of the templates
    assert any(p.get("setter", {}).get("q") == ":TIMebase:MAIN:SCALe {:s}" and p["default"] == "1.000000e-06"
               for p in scope["properties"].values())


@pytest.mark.parametrize("edit, key", [
    (lambda t: t.update({":FOO": {"type": "bogus"}}), r"scpi\.tree\.:FOO"),
    (lambda t: t.update({":FOO": {"range": [1]}}), r"scpi\.tree\.:FOO\.range"),
    (lambda t: t.update({":FOO": {"range": [0, 1], "default": "abc"}}), r"scpi\.tree\.:FOO\.default"),
    (lambda t: t.update({"[:FOO": {}}), r"scpi\.tree\.\[:FOO"),
    (lambda t: t.update({":FOO": {"values": ["A", "B"], "default": "C"}}), r"scpi\.tree\.:FOO"),
])
def test_a_malformed_tree_is_refused_naming_file_and_key(tmp_path, edit, key):
    m = load_model("rigol-dp832")
    data = yaml.safe_load(m.path.read_text(encoding="utf-8"))
    edit(data["scpi"]["tree"])
    p = tmp_path / "dp832-bad.yaml"
    p.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    with pytest.raises(ModelError, match=r"dp832-bad\.yaml:\d+: " + key):
        load_file(p)
