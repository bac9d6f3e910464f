"""CPU per text frame of a gateway stream: the templated frame (the encoded text between two
constant pieces) against the same frame from the generic JSON encoder (the whole event as a
dict, the way every other frame is written), for both wire formats.

A streamed answer has a text frame per token or so: a long answer is hundreds of frames, so a
microsecond per frame is a share of the gateway's CPU per request that grows with the answer.
Both paths give the same bytes (``tests/test_serve_wire.py`` pins it); the figure is the
median over ``--runs`` repeats of ``--frames`` frames of the per-frame time.

    python bench/bench_frames.py [--runs 7] [--frames 200000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from _util import machine, median, table

from failover_cli.serve.anthropic_wire import _block_delta, _Events
from failover_cli.serve.openai_wire import _Chunks

TEXTS = ("Hello", " world", "! This is", ' a "quoted"', " answer\n", " é 漢字")


def per_frame(write: Callable[[str], bytes], frames: int) -> float:
    """Seconds per frame of ``write`` over ``frames`` frames of the sample texts."""
    texts = TEXTS * (frames // len(TEXTS))
    t0 = time.perf_counter()
    for text in texts:
        write(text)
    return (time.perf_counter() - t0) / len(texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--frames", type=int, default=200_000)
    args = parser.parse_args()

    chunks = _Chunks("gpt-4o-mini", "req_1", 1, include_usage=False)
    chunks.start()
    events = _Events("claude-sonnet", "req_1")
    events.text("")  # opens the text block the deltas go to
    block = events.text_block
    assert block is not None
    paths: dict[tuple[str, str], Callable[[str], bytes]] = {
        ("openai", "templated"): chunks.text,
        ("openai", "generic"): lambda t: chunks.chunk({"content": t}),
        ("anthropic", "templated"): events.text,
        ("anthropic", "generic"): lambda t: _block_delta(block, {"type": "text_delta", "text": t}),
    }
    for text in TEXTS:  # the same bytes, or the comparison means nothing
        assert paths["openai", "templated"](text) == paths["openai", "generic"](text)
        assert paths["anthropic", "templated"](text) == paths["anthropic", "generic"](text)
    got: dict[tuple[str, str], list[float]] = {key: [] for key in paths}
    for _ in range(args.runs):  # interleaved: a slow moment of the host hits every path
        for key, write in paths.items():
            got[key].append(per_frame(write, args.frames))
    rows = []
    for wire in ("openai", "anthropic"):
        generic = median(got[wire, "generic"])
        for path in ("templated", "generic"):
            value = median(got[wire, path])
            rows.append((wire, path, f"{value * 1e6:.2f}", f"{value / generic:.2f}"))
    print(table(f"Text frames ({machine()}; median of {args.runs} runs of {args.frames:,})",
                ["wire format", "frame", "µs per frame", "vs generic"], rows))  # fmt: skip


if __name__ == "__main__":
    main()
