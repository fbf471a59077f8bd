"""A third-party driver for the Keysight B29xx family works, unchanged, against our emulator.

PyMeasure (0.16) ships no B2900 driver. QCoDeS ships ``KeysightB2962A`` (the B2961A/B2962A
low-noise power source, the B2900 family's sibling with the same SCPI tree for what this
driver sends: ``SOURCE<c>:VOLT``, ``SENS<c>:CURR:PROT``, ``OUTP<c>``, ``MEAS:CURR? (@c)``,
``:SOUR<c>:FUNC:MODE``, ``:SENS<c>:REM``). It sends its own command strings (long forms,
no leading colon, ``1``/``0`` booleans), over loopback TCP as a lab PC would over LAN.
"""

from __future__ import annotations

import pytest

from sim_backend.bench import SimBench

qcodes = pytest.importorskip("qcodes", reason="qcodes is optional: pip install qcodes")

US = 1e-6


def test_qcodes_keysight_b29xx_measures_a_cell_over_tcp():
    from qcodes.instrument_drivers.Keysight import KeysightB2962A

    bench = SimBench(rows=16, cols=16)
    emulator = bench.emulators["keysight-b2900"]
    bench.die_id, bench.in_contact = 12, True
    chip = bench.chip
    chip.form()
    # word line 2 (matrix 1A03) and bit line 5 (matrix column 16 + 5 = 2B10), as the card is wired
    bench.closed_channels.update({"1A03", "2B10"})
    exchanged: list[tuple[bytes, bytes | None]] = []
    process = emulator.process

    def recorded(message: bytes) -> bytes | None:
        reply = process(message)
        exchanged.append((message, reply))
        return reply

    emulator.process = recorded
    servers = bench.serve()
    smu = None
    try:
        smu = KeysightB2962A("b2900_under_test", servers.resources["keysight-b2900"],
                             visalib="@py")
        idn = smu.get_idn()
        assert (idn["vendor"], idn["model"]) == ("Keysight Technologies", "B2902A")
        ch = smu.ch1
        ch.source_mode("voltage")
        ch.current_limit(1e-4)
        ch.source_voltage(0.2)
        ch.enable("on")
        current = ch.current()
        # read back as the instrument holds them
        assert ch.enable() is True
        assert ch.source_voltage() == pytest.approx(0.2)
        assert ch.current_limit() == pytest.approx(1e-4)
        assert ch.source_mode() == "voltage"
        assert ch.remote_sensing() is False
        ch.enable("off")
        queue = smu.ask("SYST:ERR?")
    finally:
        if smu is not None:
            smu.close()
        servers.stop()
    assert queue == '+0,"No error"'
    assert list(emulator.errors) == []  # every command was understood
    # each query answered, each setting silent, as on the instrument
    for message, reply in exchanged:
        assert (reply is not None) == message.rstrip().split(b" ")[0].endswith(b"?"), message
    sent = [m for m, _ in exchanged]
    assert sent[-1] == b"SYST:ERR?"
    assert {b"SENS1:CURR:PROT 0.0001", b"SOURCE1:VOLT 0.2", b"OUTP1 1",
            b"MEAS:CURR? (@1)", b"OUTP1 0"} <= set(sent)
    assert not emulator.channels[1].output
    assert current / 0.2 == pytest.approx(chip.truth().g[2, 5], rel=0.05)
