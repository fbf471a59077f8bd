"""The Velox message-server emulator on its own: framing, stepping, contact, bins, chuck.

Messages are sent as raw bytes, in the message server's own framing, the way
FormFactor's published Python client sends them (spaces between parameters, a
trailing space where a default parameter is left empty).
"""

from __future__ import annotations

import socket

import pytest

from sim_backend.bench import SimBench
from sim_backend.emulators.velox import (
    ERR_CONTACT_FAILED,
    ERR_END_OF_WAFER,
    ERR_IN_CONTACT,
    ERR_MESSAGE,
    ERR_NO_DIE,
    ERR_PARAMETER,
    ERR_TEMPERATURE,
    ERR_UNKNOWN_COMMAND,
)


@pytest.fixture
def bench():
    return SimBench(rows=8, cols=8)


@pytest.fixture
def send(bench):
    emulator = bench.emulators["velox"]
    counter = iter(range(1, 10_000))

    def go(command: str, args: str = "") -> tuple[int, str]:
        """One command; (code, values) from its ``Rsp=<id>:<code>:<values>`` reply."""
        cmd_id = next(counter)
        reply = emulator.handle(f"Cmd={cmd_id}:{command}:{args}".encode()).decode()
        assert reply.endswith("\n")
        head, code, values = reply.rstrip("\n").split(":", 2)
        assert head == f"Rsp={cmd_id}"
        return int(code), values

    return go


def test_registration_and_identification(bench):
    emulator = bench.emulators["velox"]
    reply = emulator.handle(b"FCN=1:RegisterProberApp:myscript.py myscript.py 0")
    assert reply == b"Rsp=1:0:\n"
    assert emulator.registered == ["myscript.py"]
    assert emulator.handle(b"*IDN?").startswith(b"FormFactor Velox")
    assert emulator.handle(b"FCN=1:NoSuchFunction:").startswith(
        f"Rsp=1:{ERR_UNKNOWN_COMMAND}:".encode())


@pytest.mark.parametrize("message", [b"StepFirstDie", b"Cmd=x:StepFirstDie:", b"Cmd=3",
                                     b"hello=1:x", b"\xff\xfe", b""])
def test_a_message_out_of_framing_is_an_error_reply(bench, message):
    reply = bench.emulators["velox"].handle(message)
    assert reply.startswith(f"Rsp=0:{ERR_MESSAGE}:".encode()) and reply.endswith(b"\n")
    assert bench.die_id == bench.wafer.dies[0].id  # nothing moved


def test_unknown_commands_and_bad_parameters(send):
    assert send("StepToTheMoon") == (ERR_UNKNOWN_COMMAND, "Unknown command StepToTheMoon")
    code, message = send("StepToDie", "twelve")
    assert code == ERR_PARAMETER and "StepToDie" in message
    assert send("StepNextDie", "3")[0] == ERR_PARAMETER
    assert send("BinMapDie", "1 2")[0] == ERR_PARAMETER
    assert send("stepfirstdie")[0] == 0  # command names in any case


def test_step_to_die_by_number_and_by_column_row(bench, send):
    die = bench.wafer.info(12)
    assert send("StepToDie", "12 ") == (0, f"{die.x} {die.y} 0 0")
    assert bench.die_id == 12
    other = bench.wafer.info(20)
    assert send("StepNextDie", f"{other.x} {other.y} ") == (0, f"{other.x} {other.y} 0 0")
    assert bench.die_id == 20
    code, values = send("ReadMapPosition2")
    fields = values.split()
    assert code == 0 and fields[:2] == [str(other.x), str(other.y)]
    assert fields[6:8] == ["20", str(len(bench.wafer.dies))]  # current die, dies on the map
    assert send("GetDieDataAsNum", "12") == (0, f"12 {die.x} {die.y} 0")


def test_the_route_first_next_and_end_of_wafer(bench, send):
    dies = bench.wafer.dies
    assert send("StepFirstDie") == (0, f"{dies[0].x} {dies[0].y} 0 0")
    assert send("StepNextDie") == (0, f"{dies[1].x} {dies[1].y} 0 0")
    assert send("StepToDie", "-1") == (0, f"{dies[2].x} {dies[2].y} 0 0")
    send("StepToDie", str(dies[-1].id))
    assert send("StepNextDie") == (ERR_END_OF_WAFER, "EndOfWafer")
    assert bench.die_id == dies[-1].id
    assert send("GetNumSelectedDies") == (0, str(len(dies)))


def test_dies_not_on_the_map(bench, send):
    n = len(bench.wafer.dies)
    for number in (0, n + 1, 9999):
        code, message = send("StepToDie", str(number))
        assert code == ERR_NO_DIE and f"Die {number} is not on the wafer map" in message
    code, message = send("StepNextDie", "99 99")
    assert code == ERR_NO_DIE and "column 99, row 99" in message


def test_no_xy_move_in_contact(bench, send):
    send("StepToDie", "12")
    assert send("MoveChuckContact", "100") == (0, "")
    assert bench.in_contact and bench.chip.die_id == 12
    send("BinMapDie", "5")
    for command, args in [("StepToDie", "13"), ("StepNextDie", ""), ("StepFirstDie", ""),
                          ("StepNextDie", "1 1")]:
        code, message = send(command, args)
        assert code == ERR_IN_CONTACT and "separation" in message
    assert bench.die_id == 12 and bench.in_contact
    assert bench.bins == {12: 5}  # a refused StepFirstDie cleared nothing
    assert send("MoveChuckSeparation") == (0, "")
    assert not bench.in_contact and bench.chip is None
    assert send("StepToDie", "13")[0] == 0 and bench.die_id == 13


def test_moves_cost_bench_time(bench, send):
    t0 = bench.clock.now
    send("StepToDie", "12")
    assert bench.clock.now - t0 >= bench.latency.die_step_s
    t1 = bench.clock.now
    send("MoveChuckContact")
    assert bench.clock.now - t1 >= bench.latency.contact_s


def test_an_injected_contact_fault_fails_one_contact_move(bench, send):
    send("StepToDie", "12")
    bench.faults.inject("contact", "prober")
    code, message = send("MoveChuckContact")
    assert code == ERR_CONTACT_FAILED and "Contact failed" in message
    assert not bench.in_contact
    assert send("MoveChuckContact") == (0, "") and bench.in_contact
    assert ("prober", "contact") in bench.faults.fired


def test_bins_at_the_current_die_or_a_given_one(bench, send):
    die = bench.wafer.info(12)
    send("StepToDie", "12")
    assert send("BinMapDie", "1") == (0, f"{die.x} {die.y}")
    other = bench.wafer.info(14)
    assert send("BinMapDie", f"7 {other.x} {other.y}") == (0, f"{other.x} {other.y}")
    assert bench.bins == {12: 1, 14: 7}
    assert send("GetDieDataAsNum", "14")[1].split()[3] == "7"
    assert send("BinMapDie", "256")[0] == ERR_PARAMETER
    assert send("StepFirstDie", "0")[0] == 0 and bench.bins  # ClearBins 0 keeps them
    assert send("StepFirstDie")[0] == 0 and bench.bins == {}  # the default clears them


def test_thermal_chuck_heats_with_its_time_constant(bench, send):
    assert send("SetHeaterTemp", "85.00 C") == (0, "85.00 C")
    assert bench.chuck.setpoint_c == 85.0 and bench.observed.maxima["temperature"] == 85.0
    assert send("GetTargetTemp", "C") == (0, "85.00 C")
    t, unit, status = send("GetHeaterTemp", "C")[1].split()
    assert float(t) < 30 and unit == "C" and status == "1"  # heating
    assert send("ReadTemperatureChuckStatus") == (0, "1 0 0 0")
    bench.clock.advance(600.0)
    assert float(send("GetHeaterTemp", "C")[1].split()[0]) == pytest.approx(85.0, abs=0.5)
    assert send("ReadTemperatureChuckStatus") == (0, "4 0 0 0")  # at temperature
    send("SetHeaterTemp", "25 C")
    assert send("ReadTemperatureChuckStatus")[1].split()[0] == "2"  # cooling
    bench.clock.advance(30.0)
    assert send("StopHeatChuck") == (0, "")
    assert 25.0 < bench.chuck.setpoint_c < 85.0  # holds the temperature reached so far
    assert send("ReadTemperatureChuckStatus")[1].split()[0] == "4"


def test_temperatures_out_of_range_or_units_are_refused(bench, send):
    for args in ("400 C", "-100 C", "85 F", "85 K"):
        code, message = send("SetHeaterTemp", args)
        assert code == ERR_TEMPERATURE, args
    assert send("SetHeaterTemp", "hot")[0] == ERR_PARAMETER
    assert send("GetHeaterTemp", "F")[0] == ERR_TEMPERATURE
    assert bench.chuck.setpoint_c == 25.0 and "temperature" not in bench.observed.maxima


def test_kernel_version(send):
    code, values = send("ReportKernelVersion", "K")
    assert code == 0 and values.split()[0] == "3.3" and "Velox" in values


def test_a_garbled_reply_is_corrupted_in_transit(bench):
    bench.faults.inject("garble", "prober")
    reply = bench.emulators["velox"].handle(b"Cmd=1:ReadMapPosition2:")
    assert not reply.startswith(b"Rsp=1:0:")


def test_the_message_server_over_loopback_tcp(bench):
    """A raw socket client, as FormFactor's own client talks to port 1412."""
    with bench.serve() as servers:
        resource = servers.resources["velox"]
        port = int(resource.split("::")[2])
        assert resource.startswith("TCPIP::127.0.0.1::")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            reader = sock.makefile("rb")
            sock.sendall(b"FCN=1:RegisterProberApp:client.py client.py 0\n")
            assert reader.readline() == b"Rsp=1:0:\n"
            sock.sendall(b"Cmd=2:StepToDie:12 \n")
            die = bench.wafer.info(12)
            assert reader.readline() == f"Rsp=2:0:{die.x} {die.y} 0 0\n".encode()
            sock.sendall(b"Cmd=3:MoveChuckContact:\nCmd=4:StepToDie:13 \n")
            assert reader.readline() == b"Rsp=3:0:\n"
            assert reader.readline().startswith(f"Rsp=4:{ERR_IN_CONTACT}:".encode())
    assert bench.die_id == 12 and bench.in_contact
