# Shared by the TCP servers (prepended to their scripts): one connection on a listening
# socket, announced with "ready" once it listens so that the lab starts the client then.
import os
import socket


def scaled(seconds):
    """seconds times CT_LAB_TIME_SCALE, as the lab scales its own limits (exec.rs)."""
    try:
        scale = int(os.environ.get("CT_LAB_TIME_SCALE", "1"))
    except ValueError:
        scale = 1
    return seconds * (scale if 1 <= scale <= 100 else 1)


def accept_one(addr, port, family=socket.AF_INET):
    """The first connection to addr:port (waiting 10 s, scaled, at most) and its peer address."""
    ls = socket.socket(family, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, port))
    ls.listen(1)
    ls.settimeout(scaled(10))
    print("ready", flush=True)
    conn, peer = ls.accept()
    conn.settimeout(scaled(5))
    return conn, peer


