"""Browse one DNS-SD service type with python-zeroconf on 127.0.0.1 and
print one JSON line per event: {"event": "add"|"update", "name", "port",
"addresses", "properties"} and {"event": "remove", "name"}. Runs until its
standard input is closed. Used by registry/mdns's interop tests."""
import json
import sys
import threading

from zeroconf import ServiceBrowser, ServiceStateChange, Zeroconf

stype = sys.argv[1]
lock = threading.Lock()


def emit(obj):
    with lock:
        print(json.dumps(obj), flush=True)


def decode(b):
    return None if b is None else b.decode("utf-8", "replace")


def on_change(zeroconf, service_type, name, state_change):
    if state_change is ServiceStateChange.Removed:
        emit({"event": "remove", "name": name})
        return
    info = zeroconf.get_service_info(service_type, name, 3000)
    if info is None:
        emit({"event": "unresolved", "name": name})
        return
    emit({
        "event": "add" if state_change is ServiceStateChange.Added else "update",
        "name": name,
        "port": info.port,
        "server": info.server,
        "addresses": info.parsed_addresses(),
        "properties": {decode(k): decode(v) for k, v in info.properties.items()},
    })


zc = Zeroconf(interfaces=["127.0.0.1"])
browser = ServiceBrowser(zc, stype, handlers=[on_change])
emit({"event": "ready"})
sys.stdin.read()
browser.cancel()
zc.close()
