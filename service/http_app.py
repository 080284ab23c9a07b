"""The HTTP/REST app (starlette): KServe v2 REST, the adder's own /v1 routes and the circuit explorer at `/`.

Every route calls the gRPC servicers' own handlers (service/http_calls.py), so validation, messages,
batching, deadlines and drain are the gRPC API's. A new adder.v1 method becomes a REST route with one
line in V1_ROUTES.
"""

import json
from importlib import resources

import grpc
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from service.adder_servicer import AdderServicer
from service.config import Config
from service.errors import InvalidArgument, ResourceExhausted
from service.generated.adder.v1 import adder_pb2
from service.generated.inference import grpc_predict_v2_pb2 as pb
from service.http_calls import JSON, HttpCalls, error_response, handler_of, json_response
from service.http_kserve import HEADER_LENGTH, encode, parse
from service.inference_servicer import InferenceServicer
from service.json_messages import from_json, from_query, to_json
from service.metrics import Metrics
from service.models import ModelRegistry

# path -> (adder.v1 method, its request message, whether it waits for a model). GET takes the request's
# fields as query parameters (`/v1/add?a=36&b=28&trace=1`), POST as a JSON object.
V1_ROUTES = {
    "/v1/add": ("Add", adder_pb2.AddRequest, True),
    "/v1/add_batch": ("AddBatch", adder_pb2.AddBatchRequest, True),
    "/v1/explain": ("Explain", adder_pb2.ExplainRequest, True),
    "/v1/circuit": ("GetCircuit", adder_pb2.GetCircuitRequest, False),
    "/v1/models": ("ListModels", adder_pb2.ListModelsRequest, False),
}
TIMEOUT_PARAMETER = "timeout_ms"  # /v1 routes: the request's deadline, like a gRPC client's timeout
# The explorer loads nothing from elsewhere; the browser enforces it (and reports any attempt).
EXPLORER_POLICY = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                   "connect-src 'self'; img-src data:")


class HttpApp:
    def __init__(self, config: Config, models: ModelRegistry, metrics: Metrics):
        self.config = config
        self.adder = AdderServicer(config, models, metrics)
        self.inference = InferenceServicer(config, models, metrics)
        self.calls = HttpCalls(metrics, models.label, config.worker_threads, config.max_concurrent_rpcs)
        self.explorer = resources.files("service").joinpath("static/explorer.html").read_text()
        v2 = "/v2/models/{model}"
        routes = [
            Route("/", self.explorer_page, methods=["GET"]),
            Route("/v2/health/live", self.server_live, methods=["GET"]),
            Route("/v2/health/ready", self.server_ready, methods=["GET"]),
            Route("/v2", self.server_metadata, methods=["GET"]),
            Route("/v2/repository/index", self.repository_index, methods=["POST"]),
            Route("/v2/repository/models/{model}/load", self.repository_load, methods=["POST"]),
            Route("/v2/repository/models/{model}/unload", self.repository_unload, methods=["POST"]),
        ]
        for prefix in (v2, v2 + "/versions/{version}"):
            routes += [Route(prefix, self.model_metadata, methods=["GET"]),
                       Route(prefix + "/ready", self.model_ready, methods=["GET"]),
                       Route(prefix + "/config", self.model_config, methods=["GET"]),
                       Route(prefix + "/infer", self.model_infer, methods=["POST"])]
        routes += [Route(path, self.v1_endpoint(*spec), methods=["GET", "POST"]) for path, spec in V1_ROUTES.items()]
        self.app = Starlette(routes=routes, exception_handlers={404: _no_route, 405: _no_route})

    # ---- KServe v2 --------------------------------------------------------------------------------
    async def server_live(self, http: Request) -> Response:
        return await self._inference(http, "ServerLive", pb.ServerLiveRequest(), _flag("live"), model=None)

    async def server_ready(self, http: Request) -> Response:
        return await self._inference(http, "ServerReady", pb.ServerReadyRequest(), _flag("ready"), model=None)

    async def server_metadata(self, http: Request) -> Response:
        return await self._inference(http, "ServerMetadata", pb.ServerMetadataRequest(), _as_json, model=None)

    async def model_metadata(self, http: Request) -> Response:
        return await self._inference(http, "ModelMetadata", pb.ModelMetadataRequest(**_model(http)), _as_json)

    async def model_ready(self, http: Request) -> Response:
        return await self._inference(http, "ModelReady", pb.ModelReadyRequest(**_model(http)), _flag("ready"))

    async def model_config(self, http: Request) -> Response:
        # Triton's REST answers the config itself, not wrapped in {"config": ...}
        return await self._inference(http, "ModelConfig", pb.ModelConfigRequest(**_model(http)),
                                     lambda r: json_response(to_json(r.config)))

    async def repository_index(self, http: Request) -> Response:
        try:
            body = await self._body(http)
            ready = from_json(pb.RepositoryIndexRequest, _json_body(body) if body.strip() else {}).ready
        except InvalidArgument as error:
            return error_response(error.code, str(error))
        # Triton's REST answers a bare list of {name, version, state, reason}
        return await self._inference(http, "RepositoryIndex", pb.RepositoryIndexRequest(ready=ready),
                                     lambda r: json_response([to_json(m) for m in r.models]), model=None)

    async def repository_load(self, http: Request) -> Response:
        request = pb.RepositoryModelLoadRequest(model_name=http.path_params["model"])
        return await self._inference(http, "RepositoryModelLoad", request, _empty, blocking=True)

    async def repository_unload(self, http: Request) -> Response:
        request = pb.RepositoryModelUnloadRequest(model_name=http.path_params["model"])
        return await self._inference(http, "RepositoryModelUnload", request, _empty, blocking=True)

    async def model_infer(self, http: Request) -> Response:
        model = http.path_params["model"]
        try:
            body = await self._body(http)
            call = parse(body, http.headers.get(HEADER_LENGTH), model, http.path_params.get("version", ""))
        except (InvalidArgument, ResourceExhausted) as error:
            return await self._refused(http, "ModelInfer", model, error)

        def render(response: pb.ModelInferResponse) -> Response:
            content, header_length = encode(response, call.binary_outputs)
            if header_length is None:
                return Response(content, media_type=JSON)
            return Response(content, media_type="application/octet-stream",
                            headers={"Inference-Header-Content-Length": str(header_length)})

        return await self.calls.run(http, "ModelInfer", model, handler_of(self.inference, "ModelInfer"),
                                    call.request, render, timeout=call.timeout, blocking=True)

    async def _inference(self, http: Request, method: str, request, render, model: str | None = "",
                         blocking: bool = False) -> Response:
        name = http.path_params.get("model", "") if model == "" else model
        return await self.calls.run(http, method, name, handler_of(self.inference, method), request, render,
                                    blocking=blocking)

    # ---- adder.v1 ---------------------------------------------------------------------------------
    def v1_endpoint(self, method: str, message_class, blocking: bool):
        handler = handler_of(self.adder, method)
        has_model = "model" in message_class.DESCRIPTOR.fields_by_name

        async def endpoint(http: Request) -> Response:
            try:
                if http.method == "POST":
                    fields = _json_body(await self._body(http))
                    timeout = _timeout_ms(fields.pop(TIMEOUT_PARAMETER, None)) if isinstance(fields, dict) else None
                    request = from_json(message_class, fields)
                else:
                    items = [(k, v) for k, v in http.query_params.multi_items() if k != TIMEOUT_PARAMETER]
                    timeout = _timeout_ms(http.query_params.get(TIMEOUT_PARAMETER))
                    request = from_query(message_class, items)
            except (InvalidArgument, ResourceExhausted) as error:
                return await self._refused(http, method, None, error)
            model = request.model if has_model else None
            return await self.calls.run(http, method, model, handler, request, _as_json, timeout=timeout,
                                        blocking=blocking)

        return endpoint

    # ---- the explorer -----------------------------------------------------------------------------
    async def explorer_page(self, http: Request) -> Response:
        return HTMLResponse(self.explorer, headers={"Content-Security-Policy": EXPLORER_POLICY,
                                                    "Cache-Control": "no-cache"})

    # ---- helpers ------------------------------------------------------------------------------------
    async def _body(self, http: Request) -> bytes:
        """The request body, refused past max_message_bytes (gRPC's limit on a received message)."""
        limit = self.config.max_message_bytes
        declared = http.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ResourceExhausted(f"the request body is {int(declared):,} bytes, the limit is {limit:,} "
                                    "(ADDER_MAX_MESSAGE_BYTES)")
        chunks, size = [], 0
        async for chunk in http.stream():
            size += len(chunk)
            if size > limit:
                raise ResourceExhausted(f"the request body is over the limit of {limit:,} bytes "
                                        "(ADDER_MAX_MESSAGE_BYTES)")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _refused(self, http: Request, method: str, model: str | None, error) -> Response:
        """A request refused before it reached a handler, still counted and timed like the others."""

        def refuse(request, context):
            raise error

        return await self.calls.run(http, method, model, refuse, None, _as_json)

    def close(self) -> None:
        self.calls.close()


def _model(http: Request) -> dict:
    return {"name": http.path_params["model"], "version": http.path_params.get("version", "")}


def _as_json(message) -> Response:
    return json_response(to_json(message))


def _empty(message) -> Response:
    return json_response({})


def _flag(name: str):
    """Health answers: 200 when true, else 503 (what load balancers and Kubernetes probes act on)."""
    return lambda response: json_response({name: getattr(response, name)}, 200 if getattr(response, name) else 503)


def _json_body(body: bytes):
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidArgument(f"the request body is not valid JSON: {error}") from None


def _timeout_ms(value) -> float | None:
    if value is None:
        return None
    try:
        milliseconds = float(value)
    except (TypeError, ValueError):
        milliseconds = -1.0
    if not milliseconds > 0 or milliseconds == float("inf"):
        raise InvalidArgument(f"{TIMEOUT_PARAMETER} must be a positive number of milliseconds, got {value!r}"[:200])
    return milliseconds / 1000


async def _no_route(http: Request, error: HTTPException) -> Response:
    if error.status_code == 405:
        return error_response(grpc.StatusCode.UNIMPLEMENTED, f"{http.method} is not allowed on {http.url.path}", 405)
    return error_response(grpc.StatusCode.NOT_FOUND, f"no route {http.method} {http.url.path[:100]}; see /v2, "
                                                     f"/v1/models or the explorer at /", 404)
