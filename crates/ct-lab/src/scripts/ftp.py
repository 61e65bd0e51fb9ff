# FTP, one session, bounded: `server BIND PORT` is a minimal passive-mode server;
# `client HOST PORT` logs in with ftplib and retrieves one file over a PASV data connection.
import socket
import sys

mode, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])

if mode == "server":
    conn, _ = accept_one(addr, port)
    rfile = conn.makefile("rb")

    def send(line):
        conn.sendall(line.encode() + b"\r\n")

    send("220 ct-lab ftp")
    data_listener = None
    data_port = 0
    while True:
        line = rfile.readline()
        if not line:
            break
        verb = line.decode().strip().split(" ", 1)[0].upper()
        if verb == "USER":
            send("331 password please")
        elif verb == "PASS":
            send("230 logged in")
        elif verb == "TYPE":
            send("200 type set")
        elif verb == "PASV":
            data_listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            data_listener.bind((addr, 0))
            data_listener.listen(1)
            data_listener.settimeout(scaled(5))
            data_port = data_listener.getsockname()[1]
            send("227 Entering Passive Mode (%s,%d,%d)"
                 % (addr.replace(".", ","), data_port >> 8, data_port & 255))
        elif verb in ("RETR", "LIST", "NLST") and data_listener is not None:
            send("150 opening data connection")
            data, _ = data_listener.accept()
            data.sendall(b"ct-lab data\r\n")
            data.close()
            data_listener.close()
            data_listener = None
            send("226 transfer complete")
        elif verb == "QUIT":
            send("221 bye")
            break
        else:
            send("502 not implemented")
    conn.close()
    print("served data-port %d" % data_port, flush=True)
else:
    import ftplib

    ftp = ftplib.FTP()
    ftp.connect(addr, port, timeout=scaled(5))
    print("sport %d" % ftp.sock.getsockname()[1], flush=True)
    ftp.login("lab", "lab")
    lines = []
    ftp.retrlines("RETR file.txt", lines.append)
    ftp.quit()
    print("data %s" % "|".join(lines), flush=True)
