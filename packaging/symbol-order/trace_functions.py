#!/usr/bin/env python3
"""Lists the functions a program runs, in the order they first run.

    trace_functions.py SECONDS BINARY [ARGS...] > functions.txt

BINARY must keep its symbol table (a release build with `-C strip=none`). Every function
symbol gets a breakpoint (int3) before the program runs; a breakpoint that fires is
recorded, removed, and the thread goes on, so each function costs one stop at most. All
threads are followed. When the program exits, or after SECONDS (then it is killed), the
mangled names of the functions that ran are printed, first run first; the program's own
output goes to stderr.

Used to make `symbol-order.txt` (see README.md beside this file). Linux x86_64 only.
"""

import ctypes
import os
import signal
import subprocess
import sys
import time

PTRACE_TRACEME = 0
PTRACE_PEEKTEXT = 1
PTRACE_POKETEXT = 4
PTRACE_CONT = 7
PTRACE_GETREGS = 12
PTRACE_SETREGS = 13
PTRACE_SETOPTIONS = 0x4200
PTRACE_O_TRACECLONE = 0x8
PTRACE_O_EXITKILL = 0x100000
WALL = 0x40000000
WNOHANG = 1
RIP = 16  # index of rip in struct user_regs_struct

libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.restype = ctypes.c_long
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]


class Regs(ctypes.Structure):
    _fields_ = [("r", ctypes.c_ulonglong * 27)]


def ptrace(request, pid, addr=0, data=0):
    ctypes.set_errno(0)
    result = libc.ptrace(request, pid, ctypes.c_void_p(addr), ctypes.c_void_p(data))
    if result == -1 and ctypes.get_errno() != 0:
        raise OSError(ctypes.get_errno(), f"ptrace({request}, {pid}, {addr:#x})")
    return result


def peek(pid, addr):
    return ptrace(PTRACE_PEEKTEXT, pid, addr) & 0xFFFFFFFFFFFFFFFF


def poke_byte(pid, addr, byte):
    word = peek(pid, addr)
    ptrace(PTRACE_POKETEXT, pid, addr, (word & ~0xFF) | byte)
    return word & 0xFF


def functions(binary):
    """(address, name) of every defined function symbol with a size, one per address."""
    out = subprocess.run(
        ["nm", "--defined-only", "-S", "--no-demangle", binary],
        check=True, capture_output=True, text=True,
    ).stdout
    seen = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) != 4 or parts[2] not in "TtWw":
            continue
        address, size = int(parts[0], 16), int(parts[1], 16)
        if size > 0 and address not in seen:
            seen[address] = parts[3]
    return seen


def main():
    seconds, binary, args = float(sys.argv[1]), sys.argv[2], sys.argv[3:]
    symbols = functions(binary)
    pid = os.fork()
    if pid == 0:
        os.dup2(2, 1)  # the program's output goes to stderr: stdout is the list
        ptrace(PTRACE_TRACEME, 0)
        os.execv(binary, [binary] + args)
    os.waitpid(pid, WALL)  # stopped at exec, before any of its code ran
    ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_TRACECLONE | PTRACE_O_EXITKILL)
    real = os.path.realpath(binary)
    base = None
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) >= 6 and fields[5] == real and int(fields[2], 16) == 0:
                base = int(fields[0].split("-")[0], 16)
                break
    if base is None:
        sys.exit("cannot find the binary's mapping")
    original = {}
    for address in symbols:
        original[base + address] = poke_byte(pid, base + address, 0xCC)
    print(f"{len(original)} breakpoints set", file=sys.stderr)
    ptrace(PTRACE_CONT, pid, 0, 0)
    order, threads = [], {pid}
    deadline = time.monotonic() + seconds
    while threads and time.monotonic() < deadline:
        tid, status = os.waitpid(-1, WALL | WNOHANG)
        if tid == 0:
            time.sleep(0.001)
            continue
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            threads.discard(tid)
            continue
        if not os.WIFSTOPPED(status):
            continue
        threads.add(tid)
        sig = os.WSTOPSIG(status)
        deliver = 0
        if sig == signal.SIGTRAP and status >> 16 == 0:
            regs = Regs()
            ptrace(PTRACE_GETREGS, tid, 0, ctypes.addressof(regs))
            at = regs.r[RIP] - 1
            if at in original:
                byte = original.pop(at)
                if byte is not None:
                    poke_byte(tid, at, byte)
                    order.append(symbols[at - base])
                original[at] = None  # restored: later traps here came before the restore
                regs.r[RIP] = at
                ptrace(PTRACE_SETREGS, tid, 0, ctypes.addressof(regs))
            else:
                deliver = sig
        elif sig not in (signal.SIGTRAP, signal.SIGSTOP):
            deliver = sig
        try:
            ptrace(PTRACE_CONT, tid, 0, deliver)
        except OSError:
            threads.discard(tid)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # it exited by itself
    print(f"{len(order)} functions ran", file=sys.stderr)
    for name in order:
        print(name)


if __name__ == "__main__":
    main()
