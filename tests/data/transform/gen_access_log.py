#!/usr/bin/env python3
"""Writes access.log: a deterministic nginx/Apache combined access log for the transform
tests (fixed seed; 4000 lines from 400 clients, with a few malformed and non-UTF-8 lines).
Run from this directory: python3 gen_access_log.py"""
import random

rng = random.Random(20240501)
methods = ["GET"] * 6 + ["POST"] * 2 + ["PUT", "DELETE", "HEAD"]
paths = ["/", "/index.html", "/api/v1/users", "/api/v1/orders?id=7", "/static/app.js", "/login", "/health"]
statuses = [200] * 12 + [201, 204, 301, 304, 400, 401, 403, 404, 404, 500, 502, 503]
agents = ["Mozilla/5.0 (X11; Linux x86_64)", "curl/8.5.0", "Go-http-client/1.1", "kube-probe/1.29"]
clients = [f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}" for _ in range(380)]
clients += [f"2001:db8::{i:x}" for i in range(20)]
months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
out = []
t = 1714521600  # 2024-05-01T00:00:00Z
for n in range(4000):
    t += rng.choice([0, 0, 0, 1, 1, 2])
    if n % 500 == 250:
        out.append(b"this line is not an access log line")
        continue
    if n % 1000 == 777:
        out.append(b"\xff\xfe garbage \xc3( bytes")
        continue
    sec, minute, hour, day = t % 60, (t // 60) % 60, (t // 3600) % 24, 1 + (t // 86400 - 19844) % 28
    when = f"{day:02d}/May/2024:{hour:02d}:{minute:02d}:{sec:02d} +0200"
    size = "-" if rng.random() < 0.05 else str(int(rng.expovariate(1 / 4000)))
    line = (
        f'{rng.choice(clients)} - {rng.choice(["-", "alice", "bob"])} [{when}] '
        f'"{rng.choice(methods)} {rng.choice(paths)} HTTP/1.1" {rng.choice(statuses)} {size} '
        f'"-" "{rng.choice(agents)}"'
    )
    out.append(line.encode())
with open("access.log", "wb") as f:
    f.write(b"\n".join(out) + b"\n")
