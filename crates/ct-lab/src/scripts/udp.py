# UDP, bounded: `server BIND PORT COUNT` answers COUNT datagrams;
# `client DST PORT COUNT WAIT` sends COUNT datagrams (one at a time) and waits up to WAIT
# seconds for each answer, reporting `reply`, `refused` (ICMP port unreachable) or `timeout`.
import socket
import sys

mode, addr, port, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
family = socket.AF_INET6 if ":" in addr else socket.AF_INET

if mode == "server":
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((addr, port))
    s.settimeout(10)
    print("ready", flush=True)
    for _ in range(count):
        data, peer = s.recvfrom(4096)
        s.sendto(data, peer)
    print("served %d" % count, flush=True)
else:
    wait = float(sys.argv[5])
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.connect((addr, port))
    print("sport %d" % s.getsockname()[1], flush=True)
    s.settimeout(wait)
    for i in range(count):
        s.send(b"ct-lab %d" % i)
        try:
            s.recv(4096)
            print("reply", flush=True)
        except ConnectionRefusedError:
            print("refused", flush=True)
        except socket.timeout:
            print("timeout", flush=True)
