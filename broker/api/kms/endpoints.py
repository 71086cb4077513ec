"""The one KMS endpoint: read, authenticate, dispatch by ``X-Amz-Target``, answer."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from broker import fastjson
from broker.api.body import bounded_body
from broker.api.headers import origin, request_id
from broker.api.kms import wire
from broker.api.kms.problems import error_response
from broker.errors import BadRequest, InternalError, KeybrokerError
from broker.logs import get_logger
from broker.release import sigv4
from broker.release.kms import Caller, KmsService, Operation
from broker.release.origin import Origin

log = get_logger("keybroker.kms")


async def serve(request: Request) -> Response:
    try:
        state = request.app.state  # rate and connection limits: broker/api/guard.py
        service: KmsService = state.kms
        body = await bounded_body(request, int(state.settings.max_request_bytes))
        scope = request.scope
        received = sigv4.received(
            scope["method"],
            scope.get("raw_path") or scope["path"].encode("latin-1"),
            scope.get("query_string", b""),
            scope["headers"],
            body,
        )
        where = origin(request)
        caller = await service.authenticate(received, where)
        op = wire.operation(request.headers.get("x-amz-target"))
        if request.headers.get("content-type", "").split(";")[0].strip() != wire.CONTENT_TYPE:
            raise BadRequest(f"Content-Type must be {wire.CONTENT_TYPE}")
        try:
            document = fastjson.loads(body or b"{}")
        except fastjson.DuplicateMember as exc:
            raise BadRequest(f"request body names member {exc.name[:64]!r} twice") from None
        except (ValueError, RecursionError):
            raise BadRequest("request body is not valid JSON") from None
        parsed = wire.parse(op, document)
        answer = await _dispatch(service, caller, where, op, parsed)
    except KeybrokerError as exc:
        return error_response(exc, request_id(request))
    except Exception as exc:
        log.error("kms_unexpected_error", error_type=type(exc).__name__, exc_info=exc)
        failure = InternalError(
            f"internal error; the broker log has the details under request id {request_id(request)}"
        )
        return error_response(failure, request_id(request))
    return Response(
        fastjson.dumps(wire.answer(answer)),
        media_type=wire.CONTENT_TYPE,
        headers={"x-amzn-RequestId": request_id(request) or ""},
    )


async def _dispatch(
    service: KmsService, caller: Caller, where: Origin, op: Operation, request: wire.Request
) -> dict[str, Any]:
    if op is Operation.ENCRYPT:
        return await service.encrypt(
            caller,
            where,
            _required(request.key_id()),
            _required(request.blob("Plaintext", wire.MAX_PLAINTEXT)),
            request.context(),
        )
    if op is Operation.DECRYPT:
        return await service.decrypt(
            caller,
            where,
            blob=_required(request.blob("CiphertextBlob", wire.MAX_CIPHERTEXT)),
            key_id=request.key_id(required=False),
            context=request.context(),
            document=request.recipient(),
        )
    if op in (Operation.GENERATE_DATA_KEY, Operation.GENERATE_DATA_KEY_WITHOUT_PLAINTEXT):
        with_plaintext = op is Operation.GENERATE_DATA_KEY
        return await service.generate_data_key(
            caller,
            where,
            key_id=_required(request.key_id()),
            length=request.number_of_bytes(key_spec=True),
            context=request.context(),
            document=request.recipient() if with_plaintext else None,
            with_plaintext=with_plaintext,
        )
    if op is Operation.GENERATE_RANDOM:
        return await service.generate_random(
            caller, where, request.number_of_bytes(key_spec=False), request.recipient()
        )
    if op is Operation.DESCRIBE_KEY:
        return await service.describe_key(caller, _required(request.key_id()))
    served = await service.served_keys(caller)
    if op is Operation.LIST_KEYS:
        keys = [
            {"KeyId": context.name, "KeyArn": service.key_arn(caller, context.name)}
            for context in served
        ]
        return {"Keys": keys, "Truncated": False}
    wanted = request.key_id(required=False)
    aliases = [
        {
            "AliasName": f"alias/{context.name}",
            "AliasArn": service.key_arn(caller, context.name).replace(":key/", ":alias/", 1),
            "TargetKeyId": context.name,
        }
        for context in served
        if wanted is None or service.key_name(wanted) == context.name
    ]
    return {"Aliases": aliases, "Truncated": False}


def _required(value: Any) -> Any:
    if value is None:  # the parser raises first; this keeps the types honest
        raise BadRequest("a required member is missing")
    return value
