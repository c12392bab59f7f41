"""Announce one DNS-SD service instance with python-zeroconf on 127.0.0.1:
zc_announce.py TYPE INSTANCE PORT PROPERTIES_JSON. Prints READY once
registered (probed and announced), unregisters (goodbye) when its standard
input is closed. Used by registry/mdns's interop tests."""
import json
import socket
import sys

from zeroconf import ServiceInfo, Zeroconf

stype, instance, port, props = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
info = ServiceInfo(
    stype,
    instance + "." + stype,
    addresses=[socket.inet_aton("127.0.0.1")],
    port=port,
    properties=props,
    server="storks-interop-python.local.",
)
zc = Zeroconf(interfaces=["127.0.0.1"])
zc.register_service(info)
print("READY", flush=True)
sys.stdin.read()
zc.unregister_service(info)
zc.close()
