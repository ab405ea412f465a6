#!/usr/bin/env python3
# Slowloris probe for the HTTP listener (docs/operations.md, "Slow and idle HTTP clients").
# Usage: scripts/slowloris.py HOST:PORT N
# Opens N connections that each send half a request line and nothing more, then times 20
# GET /healthz on fresh connections while they are open, and counts how many slow ones the
# server kept (the rest were evicted at the connection cap).
import socket, sys, time, statistics
host, port = sys.argv[1].split(":"); port = int(port); n = int(sys.argv[2])
conns = []
for i in range(n):
    try:
        s = socket.create_connection((host, port), timeout=5)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHo")
        conns.append(s)
    except OSError as e:
        print("connect", i, e); break
time.sleep(0.5)
lat = []; fails = 0
for i in range(20):
    t0 = time.time()
    try:
        s = socket.create_connection((host, port), timeout=5)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        d = b""
        while True:
            c = s.recv(4096)
            if not c: break
            d += c
        ok = d.startswith(b"HTTP/1.1 200")
    except OSError as e:
        ok = False
    dt = time.time() - t0
    if ok: lat.append(dt * 1000)
    else: fails += 1
    time.sleep(0.05)
alive = 0
for s in conns:
    s.setblocking(False)
    try:
        d = s.recv(1)
        if d == b"": pass
    except BlockingIOError:
        alive += 1
    except OSError:
        pass
print(f"slow connections opened={len(conns)} still open={alive}; healthz ok={len(lat)} failed={fails}"
      + (f" latency ms: median={statistics.median(lat):.1f} max={max(lat):.1f}" if lat else ""))
