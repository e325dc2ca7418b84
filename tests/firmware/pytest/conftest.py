# SPDX-License-Identifier: Apache-2.0
"""Fixtures for the SMP tests on mps2/an521/cpu0/ns under QEMU.

The board's board.cmake gives QEMU a second serial port on a host PTY
("-chardev pty,id=hostS0 -serial chardev:hostS0"); the overlay makes that
UART (uart1) the zephyr,uart-mcumgr port. QEMU prints the PTY's name on its
stderr, which twister_harness's QEMU adapter does not read, so the name is
recovered from the running QEMU process instead: QEMU writes its pid to
qemu.pid in the application build folder, and on Linux /proc/PID/fdinfo of
its PTY master descriptor holds "tty-index: N", i.e. /dev/pts/N. The master
is /dev/ptmx on a host, /dev/pts/ptmx in containers (where /dev/ptmx is a
link to the devpts instance's ptmx); both are accepted.

The dut fixture is module-scoped (testcase.yaml: pytest_dut_scope: module),
so smp_port and client, also module-scoped, may depend on it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from twister_harness import DeviceAdapter

BOOT_DONE = r"factory: sample provisioning done"


@pytest.fixture(scope="session")
def anyio_backend():
    return "asyncio"


def _qemu_pid(build_dir: Path) -> int:
    for pidfile in sorted(build_dir.glob("qemu*.pid")):
        text = pidfile.read_text().strip()
        if text.isdigit():
            return int(text)
    raise FileNotFoundError(f"no qemu*.pid in {build_dir}")


# PTY multiplexer paths a master descriptor can point to: /dev/ptmx, or the
# devpts instance's own /dev/pts/ptmx (containers).
PTMX_PATHS = ("/dev/ptmx", "/dev/pts/ptmx")


def _qemu_ptys(pid: int) -> list[str]:
    ptys = []
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            if os.readlink(fd) not in PTMX_PATHS:
                continue
            info = Path(f"/proc/{pid}/fdinfo/{fd.name}").read_text()
        except OSError:
            continue
        for line in info.splitlines():
            if line.startswith("tty-index:"):
                ptys.append(f"/dev/pts/{line.split(':', 1)[1].strip()}")
    return ptys


@pytest.fixture(scope="module")
def smp_port(dut: DeviceAdapter) -> str:
    """The host PTY of the device's SMP UART, once the device has booted."""
    dut.readlines_until(regex=BOOT_DONE, timeout=180)
    build_dir = Path(dut.device_config.app_build_dir)
    deadline = time.monotonic() + 10
    while True:
        try:
            ptys = _qemu_ptys(_qemu_pid(build_dir))
        except (FileNotFoundError, OSError):
            ptys = []
        if len(ptys) == 1:
            return ptys[0]
        if time.monotonic() > deadline:
            raise RuntimeError(f"expected exactly one QEMU PTY (uart1), found {ptys}")
        time.sleep(0.2)
