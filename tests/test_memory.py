"""base/memory.py: the host's memory as Linux counts it, and None where it does not."""

import sys

import pytest

from zoetrope.base import memory

MIB = 1 << 20


def fake_host(tmp_path, monkeypatch, meminfo: str, cgroup: dict[str, str]) -> None:
    (tmp_path / "proc").mkdir(parents=True)
    (tmp_path / "proc" / "meminfo").write_text(meminfo)
    for name, text in cgroup.items():
        path = tmp_path / "cgroup" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    monkeypatch.setattr(memory, "PROC", tmp_path / "proc")
    monkeypatch.setattr(memory, "CGROUP", tmp_path / "cgroup")


def test_available_is_memavailable_or_a_containers_room(tmp_path, monkeypatch):
    fake_host(tmp_path, monkeypatch, "MemTotal: 4000 kB\nMemAvailable:    2048 kB\n", {})
    assert memory.available_bytes() == 2 * MIB
    v2 = {"memory.max": f"{3 * MIB}\n", "memory.current": f"{2 * MIB}\n"}
    fake_host(tmp_path / "v2", monkeypatch, "MemAvailable: 4096 kB\n", v2)
    assert memory.available_bytes() == MIB  # the cgroup's limit leaves less than the host
    unlimited = {"memory.max": "max\n", "memory.current": "5\n",
                 "memory/memory.limit_in_bytes": f"{8 * MIB}\n", "memory/memory.usage_in_bytes": f"{7 * MIB}\n"}
    fake_host(tmp_path / "v1", monkeypatch, "MemAvailable: 4096 kB\n", unlimited)
    assert memory.available_bytes() == MIB  # v2 says no limit, v1 has one (a hybrid host): every limit counts
    fake_host(tmp_path / "old", monkeypatch, "MemFree: 4096 kB\n", {})
    assert memory.available_bytes() is None  # a kernel without MemAvailable (before 3.14)


def test_no_counters_no_numbers(tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "PROC", tmp_path / "nothing")
    ran = []
    assert memory.available_bytes() is None
    assert memory.resident_rise(lambda: ran.append(1)) is None and ran == []  # not run when it cannot be measured


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's /proc counters")
def test_a_rise_is_what_the_work_held_at_its_peak():
    def hold(size: int) -> None:
        block = bytearray(size)  # zero-filled: every page touched
        del block

    big = memory.resident_rise(lambda: hold(64 * MIB))
    assert 60 * MIB <= big <= 96 * MIB
    again = memory.resident_rise(lambda: hold(8 * MIB))  # freed pages given back first: not hidden by the 64
    assert 6 * MIB <= again <= 40 * MIB
    assert memory.resident_rise(lambda: None) <= 4 * MIB
