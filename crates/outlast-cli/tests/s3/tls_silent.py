"""Opens a TLS connection to HOST:PORT (trusting CA) choosing PROTOCOL by ALPN, then says
nothing: prints how long the server kept it open. Fails if it was still open after 15 s."""

import socket
import ssl
import sys
import time

host, port, ca, protocol = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols([protocol])
conn = ctx.wrap_socket(socket.create_connection((host, port)), server_hostname=host)
assert conn.selected_alpn_protocol() == protocol, conn.selected_alpn_protocol()
began = time.time()
conn.settimeout(15)
try:
    while conn.recv(4096):  # an HTTP/2 server speaks first (its SETTINGS)
        pass
except TimeoutError:
    sys.exit("still open after 15 s")
except (ssl.SSLError, ConnectionError):
    pass  # closed without a TLS goodbye
print("%.2f" % (time.time() - began))
