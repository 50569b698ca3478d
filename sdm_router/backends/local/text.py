"""Incremental detokenization and stop-string detection for one generated sequence.

Text is extended the way vLLM does it: decode a short window of recent tokens and emit only the
part past the previously decoded prefix, and hold it back while it ends in an incomplete UTF-8
sequence (U+FFFD). Stop strings are searched in the text as it grows; a stream holds back any
tail that could still become a stop string.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

Decode = Callable[[Sequence[int]], str]
_REPLACEMENT = "\ufffd"


class TextTracker:
    """The text of a growing token sequence, and where a stop string cut it."""

    def __init__(self, decode: Decode, stops: Sequence[str] = ()) -> None:
        self._decode = decode
        self._stops = tuple(stop for stop in stops if stop)
        self._longest_stop = max((len(stop) for stop in self._stops), default=0)
        self._ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0
        self.text = ""
        self.stop_at: int | None = None

    @property
    def stopped(self) -> bool:
        """Whether a stop string has appeared."""
        return self.stop_at is not None

    @property
    def final_text(self) -> str:
        """The text, cut before the first stop string when one appeared."""
        return self.text if self.stop_at is None else self.text[: self.stop_at]

    def push(self, token_id: int) -> str:
        """Add one token; return the text it completes (empty while a character is partial)."""
        self._ids.append(token_id)
        before = self._decode(self._ids[self._prefix_offset : self._read_offset])
        after = self._decode(self._ids[self._prefix_offset :])
        if len(after) <= len(before) or after.endswith(_REPLACEMENT):
            return ""
        piece = after[len(before) :]
        self._prefix_offset = self._read_offset
        self._read_offset = len(self._ids)
        start = len(self.text)
        self.text += piece
        if self.stop_at is None and self._stops:
            self.stop_at = self._find_stop(max(0, start - self._longest_stop + 1))
        return piece

    def _find_stop(self, search_from: int) -> int | None:
        found = [self.text.find(stop, search_from) for stop in self._stops]
        hits = [index for index in found if index >= 0]
        return min(hits) if hits else None

    def safe_length(self) -> int:
        """How much of the text a stream may emit now without emitting part of a stop string."""
        if self.stop_at is not None:
            return self.stop_at
        hold = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(self.text)), hold, -1):
                if self.text.endswith(stop[:size]):
                    hold = size
                    break
        return len(self.text) - hold
