"""What ``failover ask -a FILE`` and ``--schema`` add to the question: files read safely and
turned into parts of the user message, and a JSON schema turned into a response format.

Attachments (``-a FILE``, repeatable; ``-a -`` reads standard input):

- an image is recognised by its content (its first bytes), not its name: PNG, JPEG, GIF and
  WebP, at most 20 MiB each, sent as an ``image_url`` part holding a base64 ``data:`` URL. A
  file named like an image whose content is not one is refused (a Git LFS pointer, say);
- anything else must be UTF-8 text without NUL bytes, at most 16 MiB (the stdin bound), and
  is inlined as a text part: its name as given on the command line (``stdin`` for ``-a -``),
  then its content in a Markdown code fence longer than any run of backticks inside it::

      notes/todo.md
      ```
      ...the file...
      ```

- the parts come in command-line order, before the prompt (models read a document better
  when the question follows it); with more than one attachment each image is preceded by
  its name, so the prompt can refer to the images by name. Neighbouring text (text files,
  image names, the prompt) is one text part, its pieces a blank line apart.

A path is looked at before it is opened: a directory, a FIFO, a socket or a device is refused
without being opened (a FIFO would block, a device open can have side effects). A symbolic
link the user names is followed, but what it points to must be a regular file, and that file
is opened with ``O_NOFOLLOW`` and checked again once open (see :mod:`failover_cli.fsutil`).

Every problem raises :class:`AttachmentError`, a usage error (exit code 2) of one line.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Sequence
from typing import Any, BinaryIO

from .chat import IMAGE_TYPES
from .fsutil import NotRegularFile, TooLarge, read_limited
from .prompt import STDIN_MARKER, PromptError
from .records import frozen

MAX_IMAGE = 20 << 20  # bytes of one image
MAX_TEXT = 16 << 20  # bytes of one text file: the bound of piped stdin
MAX_TOTAL = 64 << 20  # bytes of every attachment of one question together
MAX_SCHEMA = 1 << 20  # bytes of a --schema file
STDIN_NAME = "stdin"
_CHUNK = 1 << 20

# (signature test, media type): PNG, JPEG, GIF, WebP by their magic bytes.
_IMAGES: tuple[tuple[re.Pattern[bytes], str], ...] = (
    (re.compile(rb"\x89PNG\r\n\x1a\n"), "image/png"),
    (re.compile(rb"\xff\xd8\xff"), "image/jpeg"),
    (re.compile(rb"GIF8[79]a"), "image/gif"),
    (re.compile(rb"RIFF....WEBP", re.S), "image/webp"),
)
assert {t for _, t in _IMAGES} == set(IMAGE_TYPES)
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".jpe", ".gif", ".webp")
# What a refused binary file probably is, to say so in the error.
_BINARIES: tuple[tuple[re.Pattern[bytes], str], ...] = (
    (re.compile(rb"%PDF-"), "a PDF document"),
    (re.compile(rb"PK\x03\x04"), "a ZIP archive (or an Office document)"),
    (re.compile(rb"\x1f\x8b"), "gzip-compressed data"),
    (re.compile(rb"\x7fELF"), "an executable"),
    (re.compile(rb"BM....\x00\x00\x00\x00", re.S), "a BMP image"),
    (re.compile(rb"II\*\x00|MM\x00\*"), "a TIFF image"),
    (re.compile(rb"....ftyp(?:heic|heix|mif1|avif)", re.S), "a HEIC or AVIF image"),
)
_WHAT_WE_TAKE = "failover attaches PNG, JPEG, GIF and WebP images and UTF-8 text files"


class AttachmentError(PromptError):
    """An attachment or a schema cannot be used (a usage error: exit code 2)."""


@frozen
class Attachment:
    """One file to send: ``media_type`` is an image type or ``text/plain``."""

    name: str
    media_type: str
    data: bytes

    @property
    def is_image(self) -> bool:
        return self.media_type != "text/plain"

    def parts(self, *, labelled: bool = False) -> list[dict[str, Any]]:
        """This file as OpenAI-shaped content parts (see the module docstring)."""
        if not self.is_image:
            return [{"type": "text", "text": fenced(self.name, self.data.decode("utf-8"))}]
        url = f"data:{self.media_type};base64,{base64.b64encode(self.data).decode('ascii')}"
        image = {"type": "image_url", "image_url": {"url": url}}
        return [{"type": "text", "text": f"{self.name}:"}, image] if labelled else [image]

    def summary(self) -> dict[str, Any]:
        """What ``--json`` reports of it."""
        return {"name": self.name, "type": self.media_type, "bytes": len(self.data)}


def image_type(data: bytes) -> str | None:
    """The media type of the PNG, JPEG, GIF or WebP image ``data`` starts like, or None."""
    head = data[:16]
    return next((media for magic, media in _IMAGES if magic.match(head)), None)


def fenced(name: str, text: str) -> str:
    """``text`` framed with its ``name``: the name, then the text in a code fence longer than
    any run of backticks in it (so the text cannot end the fence early)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    body = text[:-1] if text.endswith("\n") else text
    return f"{name}\n{fence}\n{body}\n{fence}"


def user_message(prompt: str, attachments: Sequence[Attachment]) -> dict[str, Any]:
    """The one user turn: the attachments' parts in order, then the prompt; neighbouring
    text is one part, its pieces a blank line apart (as an API that joins parts reads it)."""
    labelled = len(attachments) > 1
    parts = [p for a in attachments for p in a.parts(labelled=labelled)]
    parts.append({"type": "text", "text": prompt})
    content: list[dict[str, Any]] = []
    for part in parts:
        if part["type"] == "text" and content and content[-1]["type"] == "text":
            content[-1] = {"type": "text", "text": f"{content[-1]['text']}\n\n{part['text']}"}
        else:
            content.append(part)
    return {"role": "user", "content": content}


# --- reading ------------------------------------------------------------------------------------


def read_attachments(
    paths: Sequence[str],
    stdin: BinaryIO | None,
    *,
    image_limit: int = MAX_IMAGE,
    text_limit: int = MAX_TEXT,
    total_limit: int = MAX_TOTAL,
) -> list[Attachment]:
    """Read every ``-a`` argument (``-`` is ``stdin``, at most once), in order."""
    if list(paths).count(STDIN_MARKER) > 1:
        raise AttachmentError("'-a -' is given twice: standard input can be read only once")
    out: list[Attachment] = []
    total = 0
    for path in paths:
        if path == STDIN_MARKER:
            name, data = STDIN_NAME, _read_stdin(stdin, max(image_limit, text_limit))
        else:
            name, data = path, _read_file(path, max(image_limit, text_limit))
        attachment = classify(name, data, image_limit=image_limit, text_limit=text_limit)
        total += len(data)
        if total > total_limit:
            raise AttachmentError(
                f"cannot attach {name}: the attachments together pass {_size(total_limit)}, "
                "the most failover sends with one question"
            )
        out.append(attachment)
    return out


def classify(name: str, data: bytes, *, image_limit: int, text_limit: int) -> Attachment:
    """``data`` as an image (by its content) or a text file; AttachmentError otherwise."""
    media = image_type(data)
    if media is not None:
        if len(data) > image_limit:
            raise AttachmentError(
                f"cannot attach {name}: an image larger than {_size(image_limit)}"
            )
        return Attachment(name, media, data)
    if name.lower().endswith(_IMAGE_SUFFIXES):
        raise AttachmentError(
            f"cannot attach {name}: named like an image, but its content is not a PNG, JPEG, "
            "GIF or WebP image"
        )
    nul = data.find(b"\0")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AttachmentError(_not_text(name, data, f"bad UTF-8 at byte {exc.start}")) from None
    if nul >= 0:
        raise AttachmentError(_not_text(name, data, f"a NUL byte at offset {nul}"))
    if len(data) > text_limit:
        raise AttachmentError(
            f"cannot attach {name}: a text file larger than {_size(text_limit)}; trim it "
            "or send it in parts"
        )
    return Attachment(name, "text/plain", text.removeprefix("\ufeff").encode("utf-8"))


def _not_text(name: str, data: bytes, why: str) -> str:
    what = next((w for magic, w in _BINARIES if magic.match(data[:16])), None)
    if what is not None:
        return f"cannot attach {name}: it is {what}; {_WHAT_WE_TAKE}"
    return f"cannot attach {name}: not text ({why}) nor an image; {_WHAT_WE_TAKE}"


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 and not limit % (1 << 20) else f"{limit} bytes"


def _read_file(path: str, limit: int, what: str = "attach") -> bytes:
    """The bytes of the regular file ``path`` (symbolic links the user names are followed to
    a regular file), or AttachmentError saying in one line why not."""
    try:
        return read_limited(os.path.realpath(path), limit)
    except FileNotFoundError:
        hint = "" if what == "attach" else " (give a JSON schema inline, '{...}', or a .json file)"
        raise AttachmentError(f"cannot {what} {path}: no such file{hint}") from None
    except NotRegularFile as exc:
        hint = ""
        if exc.kind in ("a FIFO", "a socket") and what == "attach":
            hint = " (to attach what a command writes, pipe it to '-a -')"
        raise AttachmentError(f"cannot {what} {path}: {exc.kind}, not a file{hint}") from None
    except TooLarge:
        bound = (
            f"the most failover attaches (an image: {_size(MAX_IMAGE)}, a text file: "
            f"{_size(MAX_TEXT)})"
            if what == "attach"
            else "too large for a JSON schema"
        )
        raise AttachmentError(
            f"cannot {what} {path}: larger than {_size(limit)}, {bound}"
        ) from None
    except OSError as exc:
        raise AttachmentError(f"cannot {what} {path}: {exc.strerror or exc}") from None


def _read_stdin(stdin: BinaryIO | None, limit: int) -> bytes:
    """Standard input for ``-a -``: a pipe or a file, never a terminal, at most ``limit``."""
    if stdin is None:
        raise AttachmentError("cannot attach stdin: there is no standard input")
    try:
        tty = os.isatty(stdin.fileno())
    except (OSError, ValueError, AttributeError):
        tty = False
    if tty:
        raise AttachmentError(
            "cannot attach stdin: it is a terminal; pipe or redirect the file (-a - < FILE)"
        )
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = stdin.read(min(_CHUNK, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise AttachmentError(
            f"cannot attach stdin: larger than {_size(limit)}, the most failover attaches "
            f"(an image: {_size(MAX_IMAGE)}, a text file: {_size(MAX_TEXT)})"
        )
    if not size:
        raise AttachmentError("cannot attach stdin: nothing was piped on standard input")
    return b"".join(chunks)


# --- --schema -----------------------------------------------------------------------------------


def load_schema(value: str, limit: int = MAX_SCHEMA) -> dict[str, Any]:
    """The ``response_format`` for ``--schema VALUE``: a JSON schema object given inline
    (VALUE starts with ``{``) or as the path of a file holding one. The schema is named after
    the file (its stem, as an API name allows it) or ``response`` when inline. Raises
    AttachmentError on a missing or unreadable file, invalid JSON, or JSON that is not an
    object."""
    inline = value.lstrip().startswith(("{", "["))
    name = "response"
    if inline:
        text = value
    elif not value.strip():
        raise AttachmentError("--schema: empty; give a JSON schema object or a .json file")
    else:
        data = _read_file(value, limit, what="read the schema")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise AttachmentError(
                f"--schema {value}: not UTF-8 text (bad byte at offset {exc.start})"
            ) from None
        stem = os.path.splitext(os.path.basename(value))[0]
        name = re.sub(r"[^A-Za-z0-9_-]", "_", stem)[:64] or name
    where = "--schema" if inline else f"--schema {value}"
    schema = _parse_json(text, where)
    if not isinstance(schema, dict):
        raise AttachmentError(
            f"{where}: a JSON schema must be an object ({{...}}), not {_json_kind(schema)}"
        )
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}


def _parse_json(text: str, where: str) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    try:
        return json.loads(text, parse_constant=refuse)
    except json.JSONDecodeError as exc:
        raise AttachmentError(
            f"{where}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:
        raise AttachmentError(f"{where}: not valid JSON (nested too deeply)") from None
    except ValueError as exc:
        raise AttachmentError(f"{where}: not valid JSON ({exc})") from None


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


# --- the answer ---------------------------------------------------------------------------------

_FENCED = re.compile(r"\s*```[A-Za-z0-9_-]*\s*\n(?P<body>.*?)\n?```\s*", re.S)


def parse_answer(text: str) -> Any:
    """The JSON value of a structured answer; a Markdown code fence around it (some models add
    one) is removed. Raises ValueError, with the parser's reason, when it is not JSON."""
    match = _FENCED.fullmatch(text)
    body = match["body"] if match else text

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    try:
        return json.loads(body, parse_constant=refuse)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except RecursionError:
        raise ValueError("nested too deeply") from None
