"""Writes the journal export stream (systemd's Journal Export Format) that
lz4-systemd247.journal was made from: 300 entries, a large field (compressed by journald
when over 512 bytes) on every third entry, and a binary field."""
import struct
import sys

out = sys.stdout.buffer
for i in range(300):
    size = [10, 700, 3000][i % 3]
    big = (b"entry %d says hello to the old journal; " % i * 100)[:size]
    fields = [
        (b"__REALTIME_TIMESTAMP", b"%d" % (1700000000000000 + i * 1000)),
        (b"__MONOTONIC_TIMESTAMP", b"%d" % (i + 1)),
        (b"_BOOT_ID", b"0123456789abcdef0123456789abcdef"),
        (b"MESSAGE", b"msg %d" % i),
        (b"PRIORITY", b"%d" % (i % 8)),
        (b"SYSLOG_IDENTIFIER", b"old"),
        (b"BIG", big),
    ]
    for name, value in fields:
        out.write(name + b"=" + value + b"\n")
    binary = bytes([0, 1, 2, 10, 255, i % 256])
    out.write(b"BIN\n" + struct.pack("<Q", len(binary)) + binary + b"\n")
    out.write(b"\n")
