"""A gRPC client of the example Greeter in Python, on Debian's grpcio.

Run by python_test.go against a provider exporting version --version, with
the stubs that protoc's grpc_python_plugin generated for greeter.proto on
PYTHONPATH. It prints one line per check, for the Go test to read:

    reply {"message": ..., "provider": ...}
    unversioned <STATUS CODE> <details>
    fail <STATUS CODE> <details>
    health <status> | health skipped: <why>

and exits non-zero, with a traceback, on anything unexpected.
"""

import argparse
import json
import sys

import grpc

from greeter.v1 import greeter_pb2, greeter_pb2_grpc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True, help="host:port of the provider")
    ap.add_argument("--name", required=True, help="the name to greet")
    ap.add_argument("--version", required=True, help="the provider's service version")
    args = ap.parse_args()

    # Loopback only: never through a proxy from the environment.
    with grpc.insecure_channel(args.addr, options=[("grpc.enable_http_proxy", 0)]) as channel:
        stub = greeter_pb2_grpc.GreeterStub(channel)
        version = (("storks-version", args.version),)

        # A unary call with a deadline and the version metadata.
        reply = stub.SayHello(greeter_pb2.HelloRequest(name=args.name), timeout=30, metadata=version)
        print("reply", json.dumps({"message": reply.message, "provider": reply.provider}))

        # The same without the metadata reaches no export.
        try:
            stub.SayHello(greeter_pb2.HelloRequest(name=args.name), timeout=30)
            print("unversioned OK")
        except grpc.RpcError as e:
            print("unversioned", e.code().name, e.details())

        # An error status with its code and message.
        try:
            stub.Fail(greeter_pb2.FailRequest(code=7, message="not for Python"), timeout=30, metadata=version)
            print("fail OK")
        except grpc.RpcError as e:
            print("fail", e.code().name, e.details())

        # grpc.health.v1, if this grpcio has its health package (Debian's
        # python3-grpcio does not ship grpc_health).
        try:
            from grpc_health.v1 import health_pb2, health_pb2_grpc
        except ImportError as e:
            print("health skipped:", e)
        else:
            resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=30)
            print("health", health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))
    return 0


if __name__ == "__main__":
    sys.exit(main())
