#!/usr/bin/python3
"""gRPC server and client for lb's tests (Debian: python3-grpcio), with raw-bytes
messages (no protobuf compiler needed).

  grpc_probe.py server PORT NAME MODE   # MODE: ok | unavailable | fail-mid-stream
  grpc_probe.py client ADDR unary|stream

The server prints "ready" once listening and counts calls in NAME.calls (next to this
process's working directory). The client prints one JSON object: the status code name,
details, and the messages received.
"""

import json
import sys
import time
from concurrent import futures

import grpc


def server(port, name, mode):
    calls = {"n": 0}

    def count():
        calls["n"] += 1
        with open(name + ".calls", "w") as f:
            f.write(str(calls["n"]))

    def unary(request, context):
        count()
        if mode == "unavailable":
            context.abort(grpc.StatusCode.UNAVAILABLE, name + " is down")
        return name.encode() + b":" + request

    def stream(request, context):
        count()
        if mode == "unavailable":
            context.abort(grpc.StatusCode.UNAVAILABLE, name + " is down")
        for i in range(4):
            if mode == "fail-mid-stream" and i == 2:
                context.abort(grpc.StatusCode.UNAVAILABLE, name + " failed mid-stream")
            yield (name + ":" + str(i)).encode()
            time.sleep(0.05)

    handler = grpc.method_handlers_generic_handler(
        "lb.Test",
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "Stream": grpc.unary_stream_rpc_method_handler(stream),
        },
    )
    s = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    s.add_generic_rpc_handlers((handler,))
    s.add_insecure_port("127.0.0.1:%d" % port)
    s.start()
    print("ready", flush=True)
    s.wait_for_termination()


def client(addr, call):
    channel = grpc.insecure_channel(addr)
    out = {"code": "OK", "details": "", "messages": []}
    try:
        if call == "unary":
            reply = channel.unary_unary("/lb.Test/Unary")(b"hello", timeout=10)
            out["messages"].append(reply.decode())
        else:
            for m in channel.unary_stream("/lb.Test/Stream")(b"go", timeout=10):
                out["messages"].append(m.decode())
    except grpc.RpcError as e:
        out["code"] = e.code().name
        out["details"] = e.details()
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    else:
        client(sys.argv[2], sys.argv[3])
