"""The Gemini API: ``models/{model}:generateContent``, ``:streamGenerateContent``, ``models``.

Wire format, as documented by Google (https://ai.google.dev/api/generate-content,
https://ai.google.dev/api/models):

- A ``GenerateContentResponse`` has ``candidates[0].content.parts[].text`` (role ``model``),
  ``finishReason`` and ``usageMetadata`` (``promptTokenCount``, ``candidatesTokenCount``,
  ``totalTokenCount``), plus ``modelVersion`` and ``responseId``.
- ``:streamGenerateContent?alt=sse`` sends one ``data: {GenerateContentResponse}`` event per
  chunk, CRLF-terminated (nyroway/nyro#265), with no ``[DONE]``: the last chunk carries
  ``finishReason`` and the cumulative usage (google-gemini cookbook ``Streaming_REST``;
  ankit373/hydra#855). Without ``alt=sse`` the stream is a JSON array, as the real API sends.
- Errors are ``{"error": {"code", "message", "status"}}`` with a google.rpc status name. A
  missing key is a 403 ``PERMISSION_DENIED`` ("Method doesn't allow unregistered callers",
  PublicAffairs/openai-gemini#92); a wrong key is a 400 ``INVALID_ARGUMENT`` whose details
  carry ``reason: API_KEY_INVALID`` (cequence-io/openai-scala-client#109); context overflow is
  a 400 "The input token count (N) exceeds the maximum number of tokens allowed (M)."
  (google-gemini/gemini-cli#6678).
- The key is accepted in the ``x-goog-api-key`` header or the ``key`` query parameter.

A request whose last turn is the model's gets, under ``reject_prefill``, the 400 "Please ensure
that multiturn requests ends with a user role or a function response." (songquanpeng/one-api#836).
No rate-limit headers are sent (a 429 carries its retry delay in the body). Under
``no_end_marker`` the last event (the one with ``finishReason``) lacks its blank line.

The ``auth`` fault answers 401 ``UNAUTHENTICATED`` (what the API sends for bad credentials
other than a key). Retry hints are sent only as a ``Retry-After`` header, not as the
``RetryInfo`` detail the real API uses.

Chat features, as the official SDK google-genai 3.6.1 writes and reads them (``models.py``
``_GenerateContentParameters_to_mldev`` and its helpers, ``types.py``):

- Field names are read in camelCase or snake_case at every level, as the API's protobuf JSON
  parser takes them: the SDK writes the top levels in camelCase but what it nests unchanged in
  snake_case (``inlineData: {"mime_type", "data"}``, ``functionDeclarations[].
  parameters_json_schema``). The SDK sends ``systemInstruction`` with ``role: "user"``.
- The view: tools are ``tools[].functionDeclarations[]`` (the name, and ``parametersJsonSchema``
  or the OpenAPI ``parameters`` schema with its types lower-cased); the choice is
  ``toolConfig.functionCallingConfig.mode`` (AUTO and VALIDATED ``auto``, NONE ``none``, ANY
  ``required``, or the one function ``allowedFunctionNames`` names); the last content carrying
  ``functionResponse`` parts is an answer after the tools; JSON is asked for by
  ``generationConfig.responseMimeType: application/json``, the schema being
  ``responseJsonSchema`` or ``responseSchema``.
- A tool call is answered as the API sends it and the SDK reads it
  (``GenerateContentResponse.function_calls``): ``functionCall {id, name, args}`` parts of the
  model content, ``finishReason: STOP``. Streamed, the calls come whole in the last chunk, the
  one with the finish; a stream broken before its finish breaks before them.
- Rejections, each a 400 ``INVALID_ARGUMENT`` in Google's shape: a content role other than
  ``user`` or ``model`` ("Please use a valid role: user, model.", the answer many Gemini and
  Vertex AI clients report); a content without parts ("*
  GenerateContentRequest.contents[i].parts: contents.parts must not be empty."); an image whose
  MIME type the API does not take, inline or by URI ("Unsupported MIME type: image/gif";
  the supported ones are PNG, JPEG, WebP, HEIC and HEIF,
  https://ai.google.dev/gemini-api/docs/image-understanding, microsoft/vscode#286628,
  Mai-with-u/MaiBot#1435); inline data that is not base64 (protobuf JSON's "Invalid value at
  '...inline_data.data' (TYPE_BYTES), Base64 decoding failed"); a function name breaking
  Gemini's rule ("* GenerateContentRequest.tools[0].function_declarations[i].name: Invalid
  function name. Must start with a letter or an underscore. Must be alphameric ..., with a
  maximum length of 64.", google-gemini/gemini-cli#2966, lbjlaq/Antigravity-Manager#1440: the
  SDK documents 128 characters, the API has been reported saying 64, and the simulator keeps the
  stricter limit); a declaration with both ``parameters`` and ``parametersJsonSchema``
  (mutually exclusive, ``FunctionDeclaration``), or a ``parameters`` schema with a keyword the
  OpenAPI ``Schema`` message lacks ('Invalid JSON payload received. Unknown name "$schema" at
  ...: Cannot find field.', router-for-me/CLIProxyAPI#97); ``responseSchema`` together with
  ``responseJsonSchema``; an unknown ``functionCallingConfig.mode``; a ``systemInstruction``
  whose role is neither ``user`` nor ``system``; a function response with an empty name ("Name
  cannot be empty.", langflow-ai/langflow#9437), one not right after the model's function calls
  ("Please ensure that function response turn comes immediately after a function call turn.",
  as the Vertex AI SDK's own tests expect it),
  a different number of responses than calls ("Please ensure that the number of function
  response parts is equal to the number of function call parts of the function call turn.",
  google-gemini/gemini-cli#16132), a name that is neither declared nor called before, or an
  ``id`` that none of those calls has (these two in the simulator's own words: no report of
  the real ones was found).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from .wire import (
    HEALTH,
    NO_CHAT,
    Budget,
    ChatView,
    End,
    Exchange,
    RecordedRequest,
    Reply,
    Route,
    SimToolCall,
    StreamFrames,
    Template,
    cut_json,
    dumps,
    last_role,
    quote,
    sse,
)

JSON_UTF8 = "application/json; charset=UTF-8"
_PREFIXES = ("/v1beta/", "/v1/")
_ACTIONS = (":generateContent", ":streamGenerateContent")
_STATUS = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
    403: ("PERMISSION_DENIED", "The caller does not have permission"),
    404: ("NOT_FOUND", "Requested entity was not found."),
    409: ("ABORTED", "The operation was aborted."),
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    499: ("CANCELLED", "The operation was cancelled."),
    500: (
        "INTERNAL",
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting",
    ),
    501: ("NOT_IMPLEMENTED", "Operation is not implemented, or supported, or enabled."),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
}
_NO_PREFILL = "Please ensure that multiturn requests ends with a user role or a function response."
_QUOTA_METRIC = "generativelanguage.googleapis.com/generate_content_requests"
_UNREGISTERED = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)
_QUOTA = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."
)
_BAD_ROLE = "Please use a valid role: user, model."
_BAD_NAME = (
    "Invalid function name. Must start with a letter or an underscore. Must be alphameric "
    "(a-z, A-Z, 0-9), underscores (_), dots (.), colons (:), or dashes (-), with a maximum "
    "length of 64."
)
_RESPONSE_AFTER_CALL = (
    "Please ensure that function response turn comes immediately after a function call turn."
)
_RESPONSE_COUNT = (
    "Please ensure that the number of function response parts is equal to the number of "
    "function call parts of the function call turn."
)
_FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}")
_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"})
_MODES = {"AUTO": "auto", "VALIDATED": "auto", "NONE": "none", "ANY": "required"}
# The fields of the OpenAPI ``Schema`` message (google-genai ``types.Schema``), both spellings.
_SCHEMA_FIELDS = frozenset(
    {
        "additionalProperties",
        "anyOf",
        "default",
        "defs",
        "description",
        "enum",
        "example",
        "format",
        "items",
        "maxItems",
        "maxLength",
        "maxProperties",
        "maximum",
        "minItems",
        "minLength",
        "minProperties",
        "minimum",
        "nullable",
        "pattern",
        "properties",
        "propertyOrdering",
        "ref",
        "required",
        "title",
        "type",
    }
)
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def _snake(name: str) -> str:
    return _CAMEL.sub("_", name).lower()


_SCHEMA_NAMES = _SCHEMA_FIELDS | {_snake(n) for n in _SCHEMA_FIELDS}


def field(obj: Any, name: str) -> Any:
    """``obj[name]`` in camelCase or in snake_case (the protobuf JSON parser takes both)."""
    if not isinstance(obj, dict):
        return None
    value = obj.get(name)
    return obj.get(_snake(name)) if value is None else value


class GeminiDialect:
    default_model = "gemini-2.5-flash"
    overloaded_status = 503
    id_prefix = ""
    tool_id_prefix = "call_"
    json_type = JSON_UTF8

    def route(self, request: RecordedRequest) -> Route | None:
        prefix = next((p for p in _PREFIXES if request.path.startswith(p)), None)
        if prefix is None:
            return None
        rest = request.path[len(prefix) :]
        if request.method == "GET" and rest == "models":
            return HEALTH
        if not rest.startswith("models/"):
            return None
        name = rest.removeprefix("models/")
        if request.method == "GET" and ":" not in name:
            return Route(completion=False, model=name)
        if request.method == "POST" and name.endswith(_ACTIONS):
            return Route(completion=True, model=name.rpartition(":")[0])
        return None

    def unknown_route(self, request: RecordedRequest) -> Reply:
        return _error(404, "NOT_FOUND", f"Method not found: {request.method} {request.path}")

    def check_auth(self, request: RecordedRequest, api_key: str | None) -> Reply | None:
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if not key:
            return _error(403, "PERMISSION_DENIED", _UNREGISTERED)
        if api_key is not None and key != api_key:
            details = [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                }
            ]
            message = "API key not valid. Please pass a valid API key."
            return _error(400, "INVALID_ARGUMENT", message, details)
        return None

    def chat_view(self, request: RecordedRequest) -> ChatView:
        body = request.json
        tools: dict[str, Any] = {}
        for tool in field(body, "tools") or ():
            for declaration in field(tool, "functionDeclarations") or ():
                name = field(declaration, "name")
                if isinstance(name, str):
                    tools[name] = _parameters(declaration)
        config = field(body, "generationConfig")
        wants_json = field(config, "responseMimeType") == "application/json"
        contents = field(body, "contents")
        last = contents[-1] if isinstance(contents, list) and contents else None
        after_tool = any(field(p, "functionResponse") for p in _part_list(last))
        if not tools and not wants_json and not after_tool:
            return NO_CHAT
        calling = field(field(body, "toolConfig"), "functionCallingConfig")
        choice = _MODES.get(str(field(calling, "mode") or "AUTO"), "auto")
        allowed = field(calling, "allowedFunctionNames")
        if choice == "required" and isinstance(allowed, list) and len(allowed) == 1:
            choice = str(allowed[0])
        schema = field(config, "responseJsonSchema")
        if schema is None:
            schema = _json_schema(field(config, "responseSchema"))
        return ChatView(tools, choice, after_tool, wants_json, schema if wants_json else None)

    def check_request(self, request: RecordedRequest) -> Reply | None:
        body = request.json
        if not isinstance(body, dict):
            return _error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        if not body.get("contents"):
            message = "* GenerateContentRequest.contents: contents is not specified\n"
            return _error(400, "INVALID_ARGUMENT", message)
        problem = _check_chat(body)
        return None if problem is None else _error(400, "INVALID_ARGUMENT", problem)

    def wants_stream(self, request: RecordedRequest) -> bool:
        return request.path.endswith(":streamGenerateContent")

    def stream_type(self, request: RecordedRequest) -> str:
        return "text/event-stream" if _is_sse(request) else JSON_UTF8

    def requested_model(self, request: RecordedRequest, route: Route) -> str | None:
        return route.model

    def health(self, request: RecordedRequest, route: Route, models: list[str]) -> Reply:
        if route.model is not None:
            return Reply(200, dumps(_model(route.model), indent=2), JSON_UTF8)
        return Reply(200, dumps({"models": [_model(m) for m in models]}, indent=2), JSON_UTF8)

    def message(self, exchange: Exchange, text: str, output_tokens: int) -> bytes:
        return dumps(_response(exchange, text, output_tokens, finished=True), indent=2)

    def stream(self, exchange: Exchange, tokens: list[str], end: End) -> StreamFrames:
        piece = _piece(exchange)
        prompt = exchange.input_tokens
        finishes = end in (End.COMPLETE, End.NO_MARKER)
        plain = tokens[:-1] if finishes and not exchange.tool_calls else tokens
        frames = [
            piece(quote(text), b"%d" % count, b"%d" % (prompt + count))
            for count, text in enumerate(plain, start=1)
        ]
        tail: list[bytes] = []
        if finishes:  # the last chunk carries the finish reason (and any function calls)
            last = "" if exchange.tool_calls or not tokens else tokens[-1]
            finished = dumps(_response(exchange, last, len(tokens), finished=True))
            (frames if last else tail).append(finished)
        elif end is End.ERROR:
            overloaded = {"code": 503, "message": _STATUS[503][1], "status": "UNAVAILABLE"}
            tail = [dumps({"error": overloaded})]
        elif end is End.MALFORMED:
            tail = [cut_json(_response(exchange, " more", len(tokens) + 1, finished=False))]
        if _is_sse(exchange.request):
            events = StreamFrames([], [_event(f) for f in frames], [_event(f) for f in tail])
            if end is End.NO_MARKER:  # the last event without its blank line
                ending = events.tail if events.tail else events.tokens
                ending[-1] = ending[-1].removesuffix(b"\r\n")
            return events
        # A JSON array, one element per chunk, closed only by a complete stream.
        items = [b"[" if i == 0 else b",\r\n" for i in range(len(frames) + len(tail))]
        pieces = [sep + item for sep, item in zip(items, frames + tail, strict=True)]
        closing = [b"]"] if finishes else []
        return StreamFrames([], pieces[: len(frames)], pieces[len(frames) :] + closing)

    def status_error(self, status: int, exchange: Exchange | None) -> Reply:
        name, message = _STATUS.get(status) or (
            ("INTERNAL", _STATUS[500][1]) if status >= 500 else ("FAILED_PRECONDITION", "Failed.")
        )
        return _error(status, name, message)

    def fault_error(self, fault: str, exchange: Exchange) -> Reply:
        if fault == "context_length":
            limit = 1_048_576
            message = (
                f"The input token count ({limit + exchange.input_tokens}) exceeds the maximum "
                f"number of tokens allowed ({limit})."
            )
            return _error(400, "INVALID_ARGUMENT", message)
        if fault == "quota":
            details = [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [{"quotaMetric": _QUOTA_METRIC}],
                }
            ]
            return _error(429, "RESOURCE_EXHAUSTED", _QUOTA, details)
        if fault == "auth":
            return _error(401, "UNAUTHENTICATED", _STATUS[401][1])
        message = (
            f"models/{exchange.model} is not found for API version v1beta, or is not supported "
            "for generateContent. Call ListModels to see the list of available models and their "
            "supported methods."
        )
        return _error(404, "NOT_FOUND", message)

    def prefill_error(self, request: RecordedRequest) -> Reply | None:
        if last_role(request.json.get("contents")) != "model":
            return None
        return _error(400, "INVALID_ARGUMENT", _NO_PREFILL)

    def response_headers(self, request_id: str) -> list[tuple[str, str]]:
        return []

    def ratelimit_headers(self, budgets: list[Budget], now: float) -> list[tuple[str, str]]:
        return []


# --- reading requests -------------------------------------------------------------------------


def _part_list(content: Any) -> list[Any]:
    parts = field(content, "parts")
    return parts if isinstance(parts, list) else []


def _parameters(declaration: Any) -> Any:
    """A declaration's parameters as a JSON schema."""
    schema = field(declaration, "parametersJsonSchema")
    return schema if schema is not None else _json_schema(field(declaration, "parameters"))


def _json_schema(schema: Any) -> Any:
    """An OpenAPI ``Schema`` (``"type": "OBJECT"``) as the JSON schema it stands for."""
    if isinstance(schema, list):
        return [_json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, str):
            out[key] = value.lower()
        elif key == "properties" and isinstance(value, dict):
            out[key] = {name: _json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "anyOf", "any_of"):
            out["anyOf" if key == "any_of" else key] = _json_schema(value)
        else:
            out[key] = value
    return out


def _check_chat(body: dict[str, Any]) -> str | None:
    """What the API refuses in a request's contents, tools and configs, or None."""
    system = field(body, "systemInstruction")
    if system is not None:
        role = field(system, "role")
        if role is not None and role not in ("user", "system"):
            return f"* GenerateContentRequest.system_instruction.role: {_BAD_ROLE}\n"
    declared: set[str] = set()
    for i, tool in enumerate(field(body, "tools") or ()):
        for j, declaration in enumerate(field(tool, "functionDeclarations") or ()):
            at = f"GenerateContentRequest.tools[{i}].function_declarations[{j}]"
            name = field(declaration, "name")
            if not isinstance(name, str) or not _FUNCTION_NAME.fullmatch(name):
                return f"* {at}.name: {_BAD_NAME}\n"
            declared.add(name)
            problem = _check_declaration(declaration, at)
            if problem is not None:
                return problem
    config = field(body, "generationConfig")
    if field(config, "responseSchema") is not None:
        if field(config, "responseJsonSchema") is not None:
            return (
                "* GenerateContentRequest.generation_config.response_schema: response_schema "
                "and response_json_schema are mutually exclusive.\n"
            )
        unknown = _unknown_schema_field(field(config, "responseSchema"))
        if unknown is not None:
            return _unknown_name(unknown, "generation_config.response_schema")
    calling = field(field(body, "toolConfig"), "functionCallingConfig")
    mode = field(calling, "mode")
    if mode is not None and mode not in (*_MODES, "MODE_UNSPECIFIED"):
        kind = "type.googleapis.com/google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode"
        return (
            "Invalid value at 'tool_config.function_calling_config.mode' "
            f"({kind}), {dumps(mode).decode()}"
        )
    return _check_contents(body["contents"], declared)


def _check_declaration(declaration: Any, at: str) -> str | None:
    parameters = field(declaration, "parameters")
    if parameters is None:
        return None
    if field(declaration, "parametersJsonSchema") is not None:
        return f"* {at}.parameters: parameters and parameters_json_schema are mutually exclusive.\n"
    unknown = _unknown_schema_field(parameters)
    if unknown is None:
        return None
    return _unknown_name(unknown, at.removeprefix("GenerateContentRequest.") + ".parameters")


def _unknown_schema_field(schema: Any, depth: int = 0) -> str | None:
    """The first keyword of an OpenAPI ``Schema`` (or its sub-schemas) the message lacks."""
    if not isinstance(schema, dict) or depth > 32:
        return None
    for key, value in schema.items():
        if key not in _SCHEMA_NAMES:
            return key
        subs: list[Any] = []
        if key == "properties" and isinstance(value, dict):
            subs = list(value.values())
        elif key == "items":
            subs = [value]
        elif key in ("anyOf", "any_of") and isinstance(value, list):
            subs = value
        for sub in subs:
            found = _unknown_schema_field(sub, depth + 1)
            if found is not None:
                return found
    return None


def _unknown_name(name: str, at: str) -> str:
    return f"Invalid JSON payload received. Unknown name {dumps(name).decode()} at '{at}': " + (
        "Cannot find field."
    )


def _check_contents(contents: Any, declared: set[str]) -> str | None:
    if not isinstance(contents, list):
        return 'Invalid JSON payload received. Unknown name "contents": Proto field is not ' + (
            "repeating, cannot start list."
        )
    called: set[str] = set(declared)
    previous_calls: list[Any] = []
    for i, content in enumerate(contents):
        at = f"GenerateContentRequest.contents[{i}]"
        role = field(content, "role") or "user"
        if role not in ("user", "model"):
            return _BAD_ROLE
        parts = _part_list(content)
        if not parts:
            return f"* {at}.parts: contents.parts must not be empty.\n"
        calls: list[Any] = []
        responses: list[Any] = []
        for j, part in enumerate(parts):
            problem = _check_media(part, f"contents[{i}].parts[{j}]")
            if problem is not None:
                return problem
            if field(part, "functionCall") is not None:
                calls.append(field(part, "functionCall"))
            if field(part, "functionResponse") is not None:
                responses.append((j, field(part, "functionResponse")))
        if responses:
            problem = _check_responses(responses, previous_calls, called, at)
            if problem is not None:
                return problem
        for call in calls:
            if isinstance(field(call, "name"), str):
                called.add(field(call, "name"))
        previous_calls = calls
    return None


def _check_media(part: Any, at: str) -> str | None:
    """An image the API does not take, or inline data that is not base64."""
    for kind in ("inlineData", "fileData"):
        media = field(part, kind)
        if media is None:
            continue
        mime = field(media, "mimeType")
        if isinstance(mime, str) and mime.startswith("image/") and mime not in _IMAGE_TYPES:
            return f"Unsupported MIME type: {mime}"
        if kind == "inlineData" and not _is_base64(field(media, "data")):
            data = field(media, "data")
            shown = data[:40] if isinstance(data, str) else dumps(data).decode()
            return (
                f"Invalid value at '{at}.inline_data.data' (TYPE_BYTES), Base64 decoding failed "
                f'for "{shown}"'
            )
    return None


def _is_base64(data: Any) -> bool:
    """Whether protobuf JSON reads ``data`` as bytes: base64, standard or URL-safe, padded or
    not."""
    if not isinstance(data, str):
        return False
    standard = data.replace("-", "+").replace("_", "/")
    try:
        base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _check_responses(
    responses: list[tuple[int, Any]], calls: list[Any], known: set[str], at: str
) -> str | None:
    """Function responses answer the function calls of the model turn just before."""
    for j, response in responses:
        name = field(response, "name")
        if not name:
            return f"* {at}.parts[{j}].function_response.name: Name cannot be empty.\n"
    if not calls:
        return _RESPONSE_AFTER_CALL
    if len(responses) != len(calls):
        return _RESPONSE_COUNT
    ids = {field(c, "id") for c in calls} - {None}
    for j, response in responses:
        name = field(response, "name")
        if name not in known:
            return (
                f"* {at}.parts[{j}].function_response.name: {name!s} matches no function "
                "declaration and no earlier function call.\n"
            )
        answered = field(response, "id")
        if answered is not None and ids and answered not in ids:
            return (
                f"* {at}.parts[{j}].function_response.id: {answered!s} matches the id of no "
                "function call of the function call turn.\n"
            )
    return None


# --- rendering answers ------------------------------------------------------------------------


def _is_sse(request: RecordedRequest) -> bool:
    return request.query.get("alt") == "sse"


def _event(data: bytes) -> bytes:
    return sse(data, eol=b"\r\n")


def _function_call(call: SimToolCall) -> dict[str, object]:
    return {"functionCall": {"id": call.id, "name": call.name, "args": call.arguments}}


def _call_tokens(calls: list[SimToolCall]) -> int:
    """Tokens a model spends writing ``calls`` (a stand-in: one per argument, plus one)."""
    return sum(len(dumps(c.arguments).split(b",")) + 1 for c in calls)


def _response(exchange: Exchange, text: str, output_tokens: int, *, finished: bool) -> dict:
    content: dict[str, object] = {"role": "model"}
    parts: list[dict[str, object]] = [{"text": text}] if text else []
    calls = exchange.tool_calls if finished else []
    parts += [_function_call(call) for call in calls]
    output_tokens += _call_tokens(calls)
    if parts:
        content["parts"] = parts
    candidate: dict[str, object] = {"content": content, "index": 0}
    if finished:
        candidate["finishReason"] = "SAFETY" if exchange.refused else "STOP"
    prompt = exchange.input_tokens
    usage: dict[str, object] = {"promptTokenCount": prompt}
    if output_tokens:
        usage["candidatesTokenCount"] = output_tokens
    usage["totalTokenCount"] = prompt + output_tokens
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
    return {
        "candidates": [candidate],
        "usageMetadata": usage,
        "modelVersion": exchange.model,
        "responseId": exchange.request_id,
    }


def _piece(exchange: Exchange) -> Template:
    """A chunk of a stream, with slots for its text and the cumulative token counts."""
    prompt = exchange.input_tokens
    usage = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": Template.slot(1),
        "totalTokenCount": Template.slot(2),
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
    }
    content = {"role": "model", "parts": [{"text": Template.slot(0)}]}
    return Template(
        {
            "candidates": [{"content": content, "index": 0}],
            "usageMetadata": usage,
            "modelVersion": exchange.model,
            "responseId": exchange.request_id,
        }
    )


def _model(name: str) -> dict[str, object]:
    return {
        "name": f"models/{name}",
        "version": "001",
        "displayName": name,
        "description": "A model served by the failover simulator.",
        "inputTokenLimit": 1_048_576,
        "outputTokenLimit": 65_536,
        "supportedGenerationMethods": ["generateContent", "countTokens"],
    }


def _error(status: int, name: str, message: str, details: list | None = None) -> Reply:
    error: dict[str, object] = {"code": status, "message": message, "status": name}
    if details:
        error["details"] = details
    return Reply(status, dumps({"error": error}, indent=2), JSON_UTF8)


DIALECT = GeminiDialect()
