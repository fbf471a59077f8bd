"""A third-party driver written for the real Keithley 2450 works against our emulator.

PyMeasure's driver (independent of this project) sends its own command strings;
if the emulator parsed only what our driver sends, this would fail.
"""

from __future__ import annotations

import numpy as np
import pytest

from sim_backend.bench import SimBench

pymeasure = pytest.importorskip("pymeasure", reason="pymeasure comes with the 'test' extra")


@pytest.mark.parametrize("transport", ["inprocess", "tcp"])
def test_pymeasure_keithley2450_measures_a_cell(transport):
    from pymeasure.adapters import VISAAdapter
    from pymeasure.instruments.keithley import Keithley2450

    bench = SimBench(rows=16, cols=16)
    emulators = bench.emulators
    bench.die_id, bench.in_contact = 12, True
    chip = bench.chip
    chip.form()
    # word line 2 (matrix 1A03) and bit line 5 (matrix column 16 + 5 = 2B10), as the card is wired
    bench.closed_channels.update({"1A03", "2B10"})
    servers = None
    if transport == "tcp":
        servers = bench.serve()
        adapter = VISAAdapter(servers.resources["smu"], visa_library="@py",
                              read_termination="\n", write_termination="\n")
    else:
        adapter = VISAAdapter(bench.resources()["smu"], visa_library=bench.visa_library(),
                              read_termination="\n", write_termination="\n")
    try:
        smu = Keithley2450(adapter)
        assert "2450" in smu.id
        smu.reset()
        smu.apply_voltage(voltage_range=2, compliance_current=1e-4)
        smu.measure_current(nplc=1, current=1e-4, auto_range=True)
        smu.source_voltage = 0.2
        smu.enable_source()
        current = smu.current
        smu.shutdown()
        assert list(emulators["smu"].errors) == []  # every command was understood
        g = chip.truth().g[2, 5]
        assert current / 0.2 == pytest.approx(g, rel=0.05)
        assert np.isfinite(current)
    finally:
        adapter.close()
        if servers is not None:
            servers.stop()
