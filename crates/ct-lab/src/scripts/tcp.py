# TCP, one connection, bounded: `server BIND PORT` or `client DST PORT`.
# The client sends, reads the echo and closes first (FIN_WAIT -> TIME_WAIT on the router).
import socket
import sys

mode, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
family = socket.AF_INET6 if ":" in addr else socket.AF_INET
payload = b"ct-lab hello"

if mode == "server":
    conn, peer = accept_one(addr, port, family)
    total = 0
    while True:
        chunk = conn.recv(4096)
        if not chunk:
            break
        total += len(chunk)
        conn.sendall(chunk)
    conn.close()
    print("served %s %d %d" % (peer[0], peer[1], total), flush=True)
else:
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(scaled(5))
    s.connect((addr, port))
    print("sport %d" % s.getsockname()[1], flush=True)
    s.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
    s.shutdown(socket.SHUT_WR)
    while s.recv(4096):
        pass
    s.close()
    print("echo %s" % ("ok" if got == payload else "bad"), flush=True)
