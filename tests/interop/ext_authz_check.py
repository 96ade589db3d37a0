"""Calls envoy.service.auth.v3.Authorization/Check with a client generated
from the Envoy protos by someone else (the xds-protos package), the way
Envoy's ext_authz filter does.

usage: ext_authz_check.py <host:port> <access token, or "" for none>
Prints {"code": ..., "http_status": ..., "headers": {...}}.
"""
import json
import sys

import grpc
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc

address, token = sys.argv[1], sys.argv[2]
request = external_auth_pb2.CheckRequest()
http = request.attributes.request.http
http.method = "GET"
http.path = "/api/things"
http.host = "example.com"
if token:
    http.headers["authorization"] = "Bearer " + token
request.attributes.context_extensions["audience"] = "api"

with grpc.insecure_channel(address) as channel:
    response = external_auth_pb2_grpc.AuthorizationStub(channel).Check(request, timeout=10)

out = {"code": response.status.code, "http_status": None, "headers": {}}
if response.HasField("ok_response"):
    out["headers"] = {h.header.key: h.header.value for h in response.ok_response.headers}
if response.HasField("denied_response"):
    out["http_status"] = response.denied_response.status.code
    out["headers"] = {h.header.key: h.header.value for h in response.denied_response.headers}
print(json.dumps(out))
