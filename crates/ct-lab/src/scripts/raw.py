# Raw IPv4 packets, bounded:
#   gen-serve PROTO PEER        answer one packet of protocol PROTO from PEER
#   gen-send PROTO DST          send one, wait for the answer
#   sctp-serve PEER             answer an SCTP INIT (INIT-ACK) and COOKIE-ECHO (COOKIE-ACK)
#   sctp-connect DST SPORT DPORT TAG   INIT -> INIT-ACK -> COOKIE-ECHO -> COOKIE-ACK
# SCTP is crafted by hand (the kernel needs no SCTP stack for conntrack to track it);
# the checksum is CRC32c. An open raw socket for the protocol keeps the receiving kernel
# from answering "protocol unreachable".
import os
import socket
import struct
import sys
import time

DEADLINE = time.monotonic() + 8


def crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


TABLE = crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283


def sctp_packet(sport, dport, vtag, chunks):
    body = struct.pack("!HHII", sport, dport, vtag, 0) + chunks
    crc = crc32c(body)
    return body[:8] + struct.pack("<I", crc) + body[12:]


def chunk(ctype, flags, value):
    length = 4 + len(value)
    pad = b"\0" * ((4 - length % 4) % 4)
    return struct.pack("!BBH", ctype, flags, length) + value + pad


def recv_from(s, peer):
    """The next packet from `peer`: (IP payload) without the IPv4 header."""
    while True:
        left = DEADLINE - time.monotonic()
        if left <= 0:
            raise TimeoutError("no packet from %s" % peer)
        s.settimeout(left)
        data, addr = s.recvfrom(65535)
        if addr[0] != peer:
            continue
        ihl = (data[0] & 0x0F) * 4
        return data[ihl:]


def nonzero_tag():
    while True:
        t = struct.unpack("!I", os.urandom(4))[0]
        if t:
            return t


mode = sys.argv[1]
if mode == "gen-serve":
    proto, peer = int(sys.argv[2]), sys.argv[3]
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
    print("ready", flush=True)
    data = recv_from(s, peer)
    s.sendto(b"pong:" + data, (peer, 0))
    print("answered", flush=True)
elif mode == "gen-send":
    proto, dst = int(sys.argv[2]), sys.argv[3]
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
    s.sendto(b"ping", (dst, 0))
    data = recv_from(s, dst)
    print("reply %s" % data.decode(errors="replace"), flush=True)
elif mode == "sctp-serve":
    peer = sys.argv[2]
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 132)
    print("ready", flush=True)
    my_tag = nonzero_tag()
    peer_tag = None
    while True:
        pkt = recv_from(s, peer)
        sport, dport, vtag = struct.unpack("!HHI", pkt[:8])
        ctype = pkt[12]
        if ctype == 1:  # INIT
            peer_tag = struct.unpack("!I", pkt[16:20])[0]
            cookie = struct.pack("!HH", 7, 12) + os.urandom(8)
            init_ack = struct.pack("!IIHHI", my_tag, 65535, 1, 1, 1000) + cookie
            s.sendto(sctp_packet(dport, sport, peer_tag, chunk(2, 0, init_ack)), (peer, 0))
        elif ctype == 10 and peer_tag is not None:  # COOKIE ECHO
            s.sendto(sctp_packet(dport, sport, peer_tag, chunk(11, 0, b"")), (peer, 0))
            print("served %d %d" % (peer_tag, my_tag), flush=True)
            break
elif mode == "sctp-connect":
    dst, sport, dport, tag = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 132)
    init = struct.pack("!IIHHI", tag, 65535, 1, 1, 1)
    s.sendto(sctp_packet(sport, dport, 0, chunk(1, 0, init)), (dst, 0))
    while True:
        pkt = recv_from(s, dst)
        if pkt[12] == 2 and struct.unpack("!I", pkt[4:8])[0] == tag:
            break
    peer_tag = struct.unpack("!I", pkt[16:20])[0]
    # The state cookie parameter (type 7) follows the 20-byte INIT-ACK chunk header.
    ptype, plen = struct.unpack("!HH", pkt[32:36])
    cookie = pkt[36:32 + plen] if ptype == 7 else b"cookie"
    print("init-ack %d" % peer_tag, flush=True)
    s.sendto(sctp_packet(sport, dport, peer_tag, chunk(10, 0, cookie)), (dst, 0))
    while True:
        pkt = recv_from(s, dst)
        if pkt[12] == 11:
            break
    print("tags %d %d" % (tag, peer_tag), flush=True)
else:
    sys.exit("unknown mode %s" % mode)
