"""Google Gemini API adapter (generativelanguage.googleapis.com, v1beta).

Sources:
* Request/response: https://ai.google.dev/api/generate-content. ``POST
  /v1beta/models/{model}:generateContent`` with header ``x-goog-api-key``; body ``contents``
  (``role`` user/model, ``parts[].text``), ``systemInstruction``, ``generationConfig``
  (``maxOutputTokens``, ``temperature``); response ``candidates[].content.parts[].text``,
  ``candidates[].finishReason``, ``usageMetadata`` (``promptTokenCount``,
  ``candidatesTokenCount``), ``promptFeedback.blockReason``.
* The official SDK google-genai 3.6.1, what it puts on the wire for the Gemini API
  (``models.py``: ``_GenerateContentParameters_to_mldev``, ``_GenerateContentConfig_to_mldev``,
  ``_Content_to_mldev``, ``_Part_to_mldev``, ``_FunctionCall_to_mldev``, ``_Tool_to_mldev``,
  ``_ToolConfig_to_mldev``, ``_FunctionCallingConfig_to_mldev``) and how it reads the answer
  (``_GenerateContentResponse_from_mldev``, ``_Candidate_from_mldev``): camelCase field names
  (``systemInstruction``, ``generationConfig.{maxOutputTokens, topP, stopSequences,
  responseMimeType, responseJsonSchema}``, ``tools[].functionDeclarations``,
  ``toolConfig.functionCallingConfig.{mode, allowedFunctionNames}``, parts ``inlineData``,
  ``fileData``, ``functionCall``, ``functionResponse``, ``thoughtSignature``). The SDK writes
  the objects nested in those as pydantic dumps them, in snake_case (``inlineData.mime_type``,
  ``functionDeclarations[].parameters_json_schema``); the API's protobuf JSON parser takes both
  spellings, and this adapter sends the documented camelCase throughout.
  ``types.py``: ``Content.role`` is "user" or "model"; ``Part`` holds one kind of data;
  ``Blob`` ``{mime_type, data}``; ``FileData`` ``{file_uri, mime_type}`` (both required);
  ``FunctionCall`` / ``FunctionResponse`` with an optional ``id`` ("the client ... return[s]
  the response with the matching id"); ``FunctionResponse.response`` ("Use "output" key to
  specify function output and "error" key to specify error details"); ``FunctionDeclaration``
  (``name`` "Must start with a letter or an underscore. Must be a-z, A-Z, 0-9, or contain
  underscores, dots, colons and dashes, with a maximum length of 128"; ``parameters`` an
  OpenAPI 3.0 ``Schema`` or ``parameters_json_schema``, mutually exclusive);
  ``FunctionCallingConfigMode`` AUTO/ANY/NONE (ANY with ``allowed_function_names``);
  ``GenerationConfig.response_json_schema`` ("an alternative to response_schema that accepts
  JSON Schema"; ``response_schema`` is the OpenAPI subset; both "Deprecated: use
  response_format", whose type "is not supported in Gemini API"); ``FinishReason``;
  ``BlockedReason``; ``GenerateContentResponseUsageMetadata``. ``_transformers.py``:
  ``t_schema``/``process_schema`` rewrite a JSON schema into the OpenAPI subset and refuse
  ``additionalProperties`` on the Gemini API, while ``t_json_schema`` passes a JSON schema
  through untouched. ``chats.py``: a chat history alternates user and model turns.
* Images: https://ai.google.dev/gemini-api/docs/image-understanding (PNG, JPEG, WebP, HEIC and
  HEIF; GIF is not among them) and https://ai.google.dev/gemini-api/docs/file-input-methods
  (``fileData.fileUri`` may be a public HTTP(S) URL).
* Thought signatures: https://ai.google.dev/gemini-api/docs/thought-signatures. Gemini 3 models
  reject a replayed ``functionCall`` part without its ``thoughtSignature`` (400 "Function call
  is missing a thought_signature"); for calls the model did not make here, Google documents the
  placeholder ``skip_thought_signature_validator``.
* Streaming: ``:streamGenerateContent?alt=sse`` (google-gemini/cookbook "Streaming Quickstart
  with REST"): each SSE ``data:`` is a GenerateContentResponse; there is no ``[DONE]``, the last
  chunk carries ``finishReason``, so a stream that closes without one is truncated. A function
  call arrives whole, in one chunk's parts.
* Errors: https://ai.google.dev/gemini-api/docs/troubleshooting. ``{"error": {"code",
  "message", "status", "details"}}``; 400 INVALID_ARGUMENT (an invalid key also comes as a 400
  with reason ``API_KEY_INVALID``), 400 FAILED_PRECONDITION (billing), 403 PERMISSION_DENIED,
  404 NOT_FOUND, 429 RESOURCE_EXHAUSTED (with a ``QuotaFailure`` detail naming the quota and,
  for a short wait, ``RetryInfo.retryDelay``; a per-day quota is spent until tomorrow),
  500 INTERNAL, 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED.
* Health: ``GET /v1beta/models``.

Chat requests (the plain prompt/system/temperature/prefix request keeps its original body):

* ``system`` and ``developer`` messages become the parts of ``systemInstruction`` (no role, as
  the API's reference shows it); ``user`` and ``assistant`` turns are contents of role ``user``
  and ``model``; a ``tool`` message is a ``user`` content of ``functionResponse`` parts. Turns
  of the same role in a row are merged into one content: Gemini's history alternates user and
  model (``chats.py``), and the SDK itself groups consecutive user parts (a function response
  among them) into one user content and model parts into one model content
  (``_transformers.t_contents``). A turn with nothing to send is left out (the API refuses a
  content without parts).
* Images: inline ones are ``inlineData {mimeType, data}``; one by URL is ``fileData {mimeType,
  fileUri}`` with the type read from the URL's extension (``.png``, ``.jpg``/``.jpeg``,
  ``.webp``, ``.heic``, ``.heif``, ``.gif``), else ``image/jpeg``, the most common type of a
  photo on the web (``fileData`` requires a type). Gemini takes no GIF: such a request is sent
  as it is and the API answers a 400.
* Tools are ``[{"functionDeclarations": [{name, description, parametersJsonSchema}]}]``: the
  JSON schema as the caller wrote it (only a root ``$schema``, which the API refuses, is
  dropped). ``parameters`` would need a lossy rewrite into the OpenAPI subset, which refuses
  ``additionalProperties``, type lists, ``$ref`` and other keywords callers' schemas carry, and
  the SDK passes ``parameters_json_schema`` through untouched. A function taking no parameters
  is declared without a schema ("this can be left unset"). ``tool_choice`` is
  ``toolConfig.functionCallingConfig.mode``: ``auto`` AUTO, ``none`` NONE, ``required`` ANY, a
  forced tool ANY with ``allowedFunctionNames: [its name]``; no ``tool_choice``, no toolConfig.
* Tool names: Gemini's rule (a letter or underscore first, then letters, digits, ``_ . : -``).
  The SDK's docstring allows 128 characters, but the API's own 400 has kept saying "with a
  maximum length of 64" (google-gemini/gemini-cli#2966, lbjlaq/Antigravity-Manager#1440, a
  Gemini 3 request in 2026): names are kept to 64, which both take. A longer or invalid name is
  cut short with a digest (:func:`~failover_cli.chat.wire_tool_name`), behind a ``_`` when it
  would not start with a letter, and mapped back on the answer.
* An earlier assistant call is a ``model`` part ``functionCall {id, name, args}`` (the arguments
  as an object); a tool result is ``functionResponse {id, name, response}``, the name looked up
  from the call it answers, the response the tool's text when that is a JSON object, else
  ``{"output": text}`` (the key the SDK documents for a function's output). The ids are sent:
  the SDK sends them on the Gemini API, Gemini 3 returns one with each call and matches the
  response to it. For Gemini 3 and later models (``gemini-3``, ``gemini-3.1``, ...) the first
  call of each model turn carries the placeholder thought signature: the real one is not kept
  by the chat model, and the call may come from another provider.
* Structured output: ``responseMimeType: application/json`` plus ``responseJsonSchema`` (the
  schema as written, a root ``$schema`` dropped; see tools for why not ``responseSchema``);
  ``json_object`` is the MIME type alone. ``stop`` is ``stopSequences``, ``top_p`` ``topP``.
* Answers: the text of the first candidate's parts (``thought`` parts skipped), each
  ``functionCall`` part a tool call (its ``id``, else a generated ``call_`` id; its original
  name; the arguments as compact JSON text); streamed, each call is one ToolCallDelta with its
  whole arguments. ``finishReason`` STOP is ``tool_calls`` when the answer calls a function,
  else ``stop``; MAX_TOKENS (and CONTINUATION) ``length``; SAFETY, RECITATION, LANGUAGE,
  BLOCKLIST, PROHIBITED_CONTENT, SPII, IMAGE_SAFETY, IMAGE_PROHIBITED_CONTENT,
  IMAGE_RECITATION and MODEL_ARMOR ``content_filter``; a prompt refused with
  ``promptFeedback.blockReason`` is ``content_filter`` with the block reason as stop reason.
  MALFORMED_FUNCTION_CALL and UNEXPECTED_TOOL_CALL mean the model wrote a call nobody can run:
  a transient ``malformed`` failure, so the attempt is retried, then failed over, as for any
  unreadable answer.
* Usage: ``promptTokenCount`` (which includes the cached tokens) plus
  ``toolUsePromptTokenCount`` is the input, ``cachedContentTokenCount`` the cached part; the
  output is ``candidatesTokenCount`` plus ``thoughtsTokenCount`` (the SDK: the total is the sum
  of the prompt, candidates, tool-use prompt and thoughts counts; Google bills thinking tokens
  as output), ``thoughtsTokenCount`` being the reasoning part.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import AsyncGenerator, Iterable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from ..chat import (
    FinishReason,
    ForcedTool,
    ImagePart,
    Message,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
    ToolNames,
    normalise_finish,
    tool_names_by_id,
    wire_tool_name,
)
from ..errors import ProviderError, ProviderUnavailable, TransientError
from ..types import (
    Completion,
    CompletionRequest,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from ._base import BaseProvider, KindDefaults, api_url, conversation, turns
from ._http import Call, count, decode_json, label, parsing, text_of, try_json

_DELAY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")

MAX_TOOL_NAME = 64
_TOOL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}")
_NAME_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
# Models that want a thought signature on every replayed function call (Gemini 3 and later).
_SIGNED_MODELS = re.compile(r"(?:^|/)gemini-(?:[3-9]|[1-9]\d)(?:[.-]|$)")
SKIP_SIGNATURE = "skip_thought_signature_validator"
_IMAGE_EXTENSIONS = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "heic": "image/heic",
    "heif": "image/heif",
    "gif": "image/gif",
}
_FINISH: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "CONTINUATION": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "LANGUAGE": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
    "MODEL_ARMOR": "content_filter",
}
_BROKEN_CALL = frozenset({"MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL"})
_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}


def _details(error: dict[str, Any]) -> list[dict[str, Any]]:
    details = error.get("details")
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def error_verdict(
    body: Any, status_code: int | None = None
) -> tuple[str, tuple[type[ProviderError], str] | None]:
    """Message and class of a Google API error body, branching on ``error.status`` and details.

    A 429 is a spent quota (provider) when a per-day quota is violated, or when the server
    names a violated quota without suggesting a retry; otherwise it is a rate limit."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str):
        return error, None
    if not isinstance(error, dict):
        return "", None
    message = str(error.get("message") or "")
    status = str(error.get("status") or "")
    details = _details(error)
    text = f"{message} ({status})" if status else message
    types = {str(d.get("@type", "")).rsplit(".", 1)[-1] for d in details}
    quota_ids = [
        str(v.get("quotaId", ""))
        for d in details
        for v in (d.get("violations") or [])
        if isinstance(v, dict)
    ]
    if status_code in (400, 401, 403) and (
        "API_KEY_INVALID" in {d.get("reason") for d in details}
        or "api key not valid" in message.lower()
    ):
        return text, (ProviderUnavailable, "auth")
    if status_code == 400 and status == "FAILED_PRECONDITION":
        return text, (ProviderUnavailable, "quota")
    if status_code == 429 and (
        any("PerDay" in q for q in quota_ids)
        or ("QuotaFailure" in types and "RetryInfo" not in types)
    ):
        return text, (ProviderUnavailable, "quota")
    return text, None


def retry_delay(body: Any) -> float | None:
    """Seconds from a ``google.rpc.RetryInfo`` detail (``"retryDelay": "22s"``), if any."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None
    for detail in _details(error):
        match = _DELAY_RE.match(str(detail.get("retryDelay") or ""))
        if match:
            return float(match.group(1))
    return None


def gemini_tool_name(name: str) -> str:
    """``name`` as a Gemini function name: kept when it is one (at most 64 characters), else
    shortened with a digest of the whole name, behind a ``_`` when it would not start with a
    letter or an underscore."""
    if _TOOL_NAME.fullmatch(name):
        return name
    wire = wire_tool_name(name, MAX_TOOL_NAME - 1, _TOOL_NAME)
    return wire if wire[0] in _NAME_START else "_" + wire


class GeminiToolNames(ToolNames):
    """One request's tool names as Gemini takes them (:func:`gemini_tool_name`), and back."""

    __slots__ = ()

    def __init__(self, names: Iterable[str], limit: int = MAX_TOOL_NAME) -> None:
        self._out = {n: gemini_tool_name(n) for n in names}
        self._back = {w: n for n, w in self._out.items()}

    def wire(self, name: str) -> str:
        return self._out.get(name) or gemini_tool_name(name)


def model_path(model: str) -> str:
    """``models/{model}``; a name already under ``models/`` or ``tunedModels/`` is kept."""
    collection, _, name = model.rpartition("/")
    if collection not in ("models", "tunedModels"):
        collection, name = "models", model
    return f"{collection}/{quote(name, safe='')}"


class GeminiProvider(BaseProvider):
    defaults = KindDefaults.of("gemini")

    def headers(self, key: str | None) -> dict[str, str]:
        headers: dict[str, str] = {}  # httpx sets content-type for a json= body
        if key:
            headers["x-goog-api-key"] = key
        return headers

    def _model_path(self) -> str:
        return model_path(self.config.model)

    def completion_url(self, *, stream: bool) -> str:
        return self._completion_url(self._model_path(), stream=stream)

    def _completion_url(self, path: str, *, stream: bool) -> str:
        if stream:
            return api_url(self.base_url, "v1beta", f"{path}:streamGenerateContent?alt=sse")
        return api_url(self.base_url, "v1beta", f"{path}:generateContent")

    def health_url(self) -> str:
        return api_url(self.base_url, "v1beta", "models")

    async def _open(
        self, call: Call, method: str, url: str, headers: dict[str, str], **kw: Any
    ) -> httpx.Response:
        """The model is part of Gemini's URL: a request naming its own ``model`` is sent
        there (the base builds the URL from the configured model)."""
        request = call.request
        if method == "POST" and request is not None and request.model:
            path = model_path(request.model)
            if path != self._model_path():
                url = self._completion_url(path, stream=url.endswith("alt=sse"))
        return await super()._open(call, method, url, headers, **kw)

    def body(self, request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
        if (
            request.messages
            or request.tools
            or request.response_format is not None
            or request.stop
            or request.top_p is not None
        ):
            return self._chat_body(request)
        contents = [
            {"role": "model" if role == "assistant" else "user", "parts": [{"text": text}]}
            for role, text in turns(request)
        ]
        config: dict[str, Any] = {"maxOutputTokens": request.max_tokens}
        if request.temperature is not None:
            config["temperature"] = request.temperature
        body: dict[str, Any] = {"contents": contents, "generationConfig": config}
        if request.system:
            body["systemInstruction"] = {"parts": [{"text": request.system}]}
        return body

    def _chat_body(self, request: CompletionRequest) -> dict[str, Any]:
        """The body of a request with messages, tools, structured output or more options."""
        names = GeminiToolNames.of(request.tools, request.messages) if request.uses_tools else None
        called = tool_names_by_id(request.messages) if names is not None else {}
        history = conversation(request)
        contents: list[dict[str, Any]] = []
        for message in history.turns:
            role = "model" if message.role == "assistant" else "user"
            parts = _parts(message, names, called)
            if not parts:
                continue
            if contents and contents[-1]["role"] == role:
                contents[-1]["parts"] += parts
            else:
                contents.append({"role": role, "parts": parts})
        if names is not None and _SIGNED_MODELS.search(request.model or self.config.model):
            _sign_calls(contents)
        body: dict[str, Any] = {"contents": contents}
        if history.system:
            body["systemInstruction"] = {"parts": [{"text": text} for text in history.system]}
        if request.tools and names is not None:
            declarations = [_declaration(tool, names.wire(tool.name)) for tool in request.tools]
            body["tools"] = [{"functionDeclarations": declarations}]
            choice = request.tool_choice
            if choice is not None:
                calling: dict[str, Any]
                if isinstance(choice, ForcedTool):
                    calling = {"mode": "ANY", "allowedFunctionNames": [names.wire(choice.name)]}
                else:
                    calling = {"mode": _MODES[choice]}
                body["toolConfig"] = {"functionCallingConfig": calling}
        config: dict[str, Any] = {"maxOutputTokens": request.max_tokens}
        if request.temperature is not None:
            config["temperature"] = request.temperature
        if request.top_p is not None:
            config["topP"] = request.top_p
        if request.stop:
            config["stopSequences"] = list(request.stop)
        if request.response_format is not None:
            config.update(_output_config(request.response_format))
        body["generationConfig"] = config
        return body

    def error_verdict(self, status: int, body: Any) -> tuple[str, Any]:
        return error_verdict(body, status)

    def _error(self, call: Call, response: httpx.Response, raw: bytes) -> ProviderError:
        error = super()._error(call, response, raw)
        if error.retry_after is None:
            error.retry_after = retry_delay(try_json(raw))
        return error

    def _model(self, call: Call) -> str:
        request = call.request
        return (request.model if request is not None else None) or self.config.model

    def parse_completion(self, call: Call, data: Any) -> Completion:
        with parsing(call):
            if "error" in data:
                raise _stream_error(call, data)
            text, found, reason = _read_chunk(data)
            calls = _tool_calls(call, found)
            finish = _finish(call, reason, bool(calls))
            if reason is None:
                blocked = label((data.get("promptFeedback") or {}).get("blockReason"))
                if blocked is not None:
                    reason, finish = blocked, "content_filter"
            return Completion(
                text=text,
                model=label(data.get("modelVersion")) or self._model(call),
                usage=_usage(data.get("usageMetadata") or {}),
                stop_reason=reason,
                tool_calls=calls,
                finish_reason=finish,
            )

    async def parse_stream(
        self, call: Call, response: httpx.Response
    ) -> AsyncGenerator[StreamEvent, None]:
        model, reason, usage = self._model(call), None, Usage()
        finish: FinishReason | None = None
        called = 0  # function calls seen so far: the index of the next one
        async for _, raw in self.events(call, response):
            if not raw.strip():
                continue
            chunk = decode_json(call, raw)
            with parsing(call):
                if "error" in chunk:
                    raise _stream_error(call, chunk)
                text, found, chunk_reason = _read_chunk(chunk)
                calls = _tool_calls(call, found)
                model = label(chunk.get("modelVersion")) or model
                if chunk.get("usageMetadata"):
                    usage = _usage(chunk["usageMetadata"])
                if chunk_reason is not None:
                    reason = chunk_reason
                    finish = _finish(call, reason, bool(called or calls))
                elif not chunk.get("candidates"):
                    blocked = label((chunk.get("promptFeedback") or {}).get("blockReason"))
                    if blocked is not None:
                        reason, finish = blocked, "content_filter"
            if text:
                yield TextDelta(text)
            for tool_call in calls:
                yield ToolCallDelta(called, tool_call.id, tool_call.name, tool_call.arguments)
                called += 1
        if reason is not None:
            yield StreamEnd(model, usage, reason, finish_reason=finish)


# --- requests ---------------------------------------------------------------------------------


def _parts(
    message: Message, names: ToolNames | None, called: Mapping[str, str]
) -> list[dict[str, Any]]:
    """One turn's parts in Gemini's shape."""
    if message.role == "tool":
        call_id = message.tool_call_id or ""
        name = called.get(call_id) or message.name or ""
        response: dict[str, Any] = {
            "name": names.wire(name) if names is not None else name,
            "response": _tool_result(message.text),
        }
        if call_id:
            response = {"id": call_id, **response}
        return [{"functionResponse": response}]
    parts: list[dict[str, Any]] = []
    for part in message.content:
        if isinstance(part, TextPart):
            if part.text:
                parts.append({"text": part.text})
        else:
            parts.append(_image(part))
    for tool_call in message.tool_calls:
        function = {
            "id": tool_call.id,
            "name": names.wire(tool_call.name) if names is not None else tool_call.name,
            "args": tool_call.parsed_arguments(),
        }
        parts.append({"functionCall": function})
    return parts


def _image(image: ImagePart) -> dict[str, Any]:
    if image.data is not None:
        return {"inlineData": {"mimeType": image.media_type, "data": image.data}}
    url = image.url or ""
    return {"fileData": {"mimeType": _url_type(url), "fileUri": url}}


def _url_type(url: str) -> str:
    """An image URL's media type by its extension; ``image/jpeg`` when it tells none."""
    path = urlsplit(url).path
    extension = path.rpartition(".")[2].lower() if "." in path.rpartition("/")[2] else ""
    return _IMAGE_EXTENSIONS.get(extension, "image/jpeg")


def _tool_result(text: str) -> dict[str, Any]:
    """A tool's text as a function response: the JSON object it is, else ``{"output": text}``."""
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, dict):
            return value
    return {"output": text}


def _sign_calls(contents: list[dict[str, Any]]) -> None:
    """Give the first function call of every model turn the placeholder thought signature."""
    for content in contents:
        if content["role"] != "model":
            continue
        for part in content["parts"]:
            if "functionCall" in part:
                part["thoughtSignature"] = SKIP_SIGNATURE
                break


def _schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON schema as Gemini takes it: as written, without a root ``$schema``."""
    return {k: v for k, v in schema.items() if k != "$schema"}


def _takes_nothing(schema: Mapping[str, Any]) -> bool:
    """Whether a parameters schema describes an object without any property."""
    return (
        schema.get("type", "object") == "object"
        and not schema.get("properties")
        and schema.get("additionalProperties") in (None, False)
        and set(schema) <= {"type", "properties", "required", "additionalProperties", "$schema"}
    )


def _declaration(tool: Tool, wire_name: str) -> dict[str, Any]:
    declaration: dict[str, Any] = {"name": wire_name}
    if tool.description:
        declaration["description"] = tool.description
    if not _takes_nothing(tool.parameters):
        declaration["parametersJsonSchema"] = _schema(tool.parameters)
    return declaration


def _output_config(response_format: ResponseFormat) -> dict[str, Any]:
    config: dict[str, Any] = {"responseMimeType": "application/json"}
    if response_format.type == "json_schema":
        config["responseJsonSchema"] = _schema(response_format.schema or {})
    return config


# --- responses --------------------------------------------------------------------------------


def _read_chunk(data: dict[str, Any]) -> tuple[str, list[Any], str | None]:
    """Text of the first candidate (thought parts skipped), its functionCall parts and its
    finishReason."""
    candidates = data.get("candidates") or []
    if not candidates:
        return "", [], None
    candidate = candidates[0]
    parts = (candidate.get("content") or {}).get("parts") or []
    texts: list[str] = []
    calls: list[Any] = []
    for part in parts:
        if part.get("thought"):
            continue
        if "functionCall" in part:
            calls.append(part["functionCall"])
        else:
            texts.append(text_of(part.get("text")))
    return "".join(texts), calls, label(candidate.get("finishReason"))


def _tool_calls(call: Call, found: list[Any]) -> tuple[ToolCall, ...]:
    """``functionCall`` parts as ToolCalls (original names, JSON-text arguments); raises
    TypeError (a malformed response) on a bad shape."""
    if not found:
        return ()
    request = call.request
    names = GeminiToolNames.of(request.tools, request.messages) if request is not None else None
    out = []
    for function in found:
        if not isinstance(function, dict):
            raise TypeError(f"functionCall is a {type(function).__name__}")
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise TypeError("a function call without a name")
        args = function.get("args")
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise TypeError(f"function-call args are a {type(args).__name__}")
        out.append(
            ToolCall(
                label(function.get("id")) or "call_" + secrets.token_hex(12),
                names.original(name) if names is not None else name,
                json.dumps(args, separators=(",", ":"), ensure_ascii=False),
            )
        )
    return tuple(out)


def _finish(call: Call, reason: str | None, calls: bool) -> FinishReason | None:
    """A finishReason in OpenAI's words; a call the model botched is a transient failure."""
    if reason in _BROKEN_CALL:
        raise call.error(
            TransientError,
            f"the model wrote a function call that cannot be run ({reason})",
            reason="malformed",
        )
    if calls and reason in (None, "STOP"):
        return "tool_calls"
    return normalise_finish(reason, _FINISH)


def _usage(meta: dict[str, Any]) -> Usage:
    thoughts = count(meta.get("thoughtsTokenCount"))
    return Usage(
        count(meta.get("promptTokenCount")) + count(meta.get("toolUsePromptTokenCount")),
        count(meta.get("candidatesTokenCount")) + thoughts,
        count(meta.get("cachedContentTokenCount")),
        thoughts,
    )


def _stream_error(call: Call, body: Any) -> ProviderError:
    message, verdict = error_verdict(body)
    reason = verdict[1] if verdict and verdict[0] is TransientError else "stream_error"
    return call.error(TransientError, message or "error in stream", reason=reason)
