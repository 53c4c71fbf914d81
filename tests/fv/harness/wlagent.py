"""A tiny agent that runs inside a workload's network namespace.

It serves TCP and UDP echo on the given ports and answers probe requests from the test process
over a unix socket (unix sockets are not bound to a network namespace), so a probe costs a
round trip instead of a process start. Requests and replies are JSON lines.

Ops: {"op": "tcp"|"udp"|"icmp", "dst": ip, "port": n, "timeout": s, "src": ip|null,
"sport": n|null} → {"ok": bool, "err": str}; {"op": "listen", "proto": "tcp"|"udp", "port": n}.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import select
import socket
import socketserver
import struct
import threading
import time


def _family(ip: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(ip).version == 6 else socket.AF_INET


def serve_tcp(port: int, family: int) -> None:
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
    s.listen(128)

    def handle(c: socket.socket) -> None:
        try:
            c.settimeout(5)
            data = c.recv(1024)
            if data:
                c.sendall(data)
        except OSError:
            pass
        finally:
            c.close()

    while True:
        c, _ = s.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()


def serve_udp(port: int, family: int) -> None:
    s = socket.socket(family, socket.SOCK_DGRAM)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
    while True:
        try:
            data, addr = s.recvfrom(2048)
            s.sendto(data, addr)
        except OSError:
            continue  # e.g. ENETUNREACH for a reply policy dropped: keep serving


IP_FREEBIND = 15
IPV6_FREEBIND = 78


def _freebind(s: socket.socket) -> None:
    """Lets an anti-spoofing test send from an address the workload doesn't own."""
    if s.family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)
    else:
        s.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)


def _bind_src(s: socket.socket, src: str | None, sport: int | None) -> None:
    if src or sport:
        _freebind(s)
        s.bind((src or ("::" if s.family == socket.AF_INET6 else "0.0.0.0"), sport or 0))


def probe_tcp(dst: str, port: int, timeout: float, src: str | None, sport: int | None) -> tuple[bool, str]:
    s = socket.socket(_family(dst), socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        _bind_src(s, src, sport)
        s.connect((dst, port))
        token = os.urandom(8)
        s.sendall(token)
        got = s.recv(64)
        return (got == token, "" if got == token else "bad echo")
    except OSError as e:
        return False, type(e).__name__ + ": " + str(e)
    finally:
        s.close()


def probe_udp(dst: str, port: int, timeout: float, src: str | None, sport: int | None) -> tuple[bool, str]:
    s = socket.socket(_family(dst), socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        _bind_src(s, src, sport)
        token = os.urandom(8)
        s.sendto(token, (dst, port))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got, _ = s.recvfrom(64)
            if got == token:
                return True, ""
        return False, "timeout"
    except OSError as e:
        return False, type(e).__name__ + ": " + str(e)
    finally:
        s.close()


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def probe_icmp(dst: str, timeout: float, src: str | None) -> tuple[bool, str]:
    fam = _family(dst)
    if fam == socket.AF_INET:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        req_type, rep_type = 8, 0
    else:
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        req_type, rep_type = 128, 129
    ident = random.randrange(1, 65535)
    try:
        if src:
            _freebind(s)
            s.bind((src, 0))
        payload = os.urandom(16)
        header = struct.pack("!BBHHH", req_type, 0, 0, ident, 1)
        csum = _checksum(header + payload) if fam == socket.AF_INET else 0  # kernel fills v6
        packet = struct.pack("!BBHHH", req_type, 0, csum, ident, 1) + payload
        s.sendto(packet, (dst, 0))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False, "timeout"
            r, _, _ = select.select([s], [], [], left)
            if not r:
                return False, "timeout"
            data, addr = s.recvfrom(2048)
            if fam == socket.AF_INET:
                data = data[(data[0] & 0x0F) * 4:]
            if len(data) >= 8:
                typ, _, _, rid, _ = struct.unpack("!BBHHH", data[:8])
                if typ == rep_type and rid == ident and data[8:] == payload:
                    return True, ""
    except OSError as e:
        return False, type(e).__name__ + ": " + str(e)
    finally:
        s.close()


class Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        for line in self.rfile:
            req = json.loads(line)
            op = req["op"]
            timeout = float(req.get("timeout", 1.0))
            if op == "tcp":
                ok, err = probe_tcp(req["dst"], int(req["port"]), timeout, req.get("src"), req.get("sport"))
            elif op == "udp":
                ok, err = probe_udp(req["dst"], int(req["port"]), timeout, req.get("src"), req.get("sport"))
            elif op == "icmp":
                ok, err = probe_icmp(req["dst"], timeout, req.get("src"))
            elif op == "listen":
                start_listener(req["proto"], int(req["port"]))
                ok, err = True, ""
            else:
                ok, err = False, f"unknown op {op}"
            self.wfile.write((json.dumps({"ok": ok, "err": err}) + "\n").encode())
            self.wfile.flush()


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def start_listener(proto: str, port: int) -> None:
    target = serve_tcp if proto == "tcp" else serve_udp
    for fam in (socket.AF_INET, socket.AF_INET6):
        threading.Thread(target=target, args=(port, fam), daemon=True).start()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sock", required=True)
    ap.add_argument("--tcp", default="")
    ap.add_argument("--udp", default="")
    args = ap.parse_args()
    for p in filter(None, args.tcp.split(",")):
        start_listener("tcp", int(p))
    for p in filter(None, args.udp.split(",")):
        start_listener("udp", int(p))
    if os.path.exists(args.sock):
        os.unlink(args.sock)
    srv = Server(args.sock, Handler)
    srv.serve_forever()


if __name__ == "__main__":
    main()
