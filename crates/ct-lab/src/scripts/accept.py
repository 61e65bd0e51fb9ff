# Shared by the TCP servers (prepended to their scripts): one connection on a listening
# socket, announced with "ready" once it listens so that the lab starts the client then.
import socket


def accept_one(addr, port, family=socket.AF_INET):
    """The first connection to addr:port (waiting 10 s at most) and its peer address."""
    ls = socket.socket(family, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, port))
    ls.listen(1)
    ls.settimeout(10)
    print("ready", flush=True)
    conn, peer = ls.accept()
    conn.settimeout(5)
    return conn, peer


