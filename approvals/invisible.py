"""Characters a reviewer cannot see, or that reorder what they see.

`<RLO>0005` renders as "5000". Every such character is shown to a human as a
marked `⟨U+202E⟩` instead (see the `reveal` template filter). What counts:

- format characters (Unicode category Cf): the bidi embeddings, overrides and
  isolates (U+202A–U+202E, U+2066–U+2069), U+061C, U+200E/U+200F, the zero-width
  space, joiners and word joiner (U+200B–U+200D, U+2060–U+2064), U+FEFF, U+00AD
  soft hyphen, U+180E and the tag characters;
- control characters (Cc) other than tab and line feed, so NUL, ESC and a lone CR
  count; a CR directly before a LF is an ordinary line break (the HTML parser
  turns CR LF into LF anyway) and is left alone;
- the line and paragraph separators U+2028/U+2029 and lone surrogates;
- the other default-ignorable code points that render as nothing (U+034F, the
  Hangul fillers U+115F, U+1160, U+3164, U+FFA0, U+17B4/U+17B5, U+FFF0–U+FFF8).

Variation selectors (U+FE00–U+FE0F, U+E0100–U+E01EF and the Mongolian ones) are
left alone: emoji use them all the time and they cannot reorder or hide text.
"""

import re
import sys
import unicodedata

_KEPT = {"\t", "\n", "\r"}  # CR is matched separately, when no LF follows it
_EXTRA = [0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x2028, 0x2029, 0x3164, 0xFFA0]
_EXTRA += range(0xFFF0, 0xFFF9)


def _code_points() -> list[int]:
    found = set(_EXTRA)
    for point in range(sys.maxunicode + 1):
        if unicodedata.category(chr(point)) in ("Cf", "Cc", "Cs") and chr(point) not in _KEPT:
            found.add(point)
    return sorted(found)


def _char_class(points: list[int]) -> str:
    ranges, start, end = [], points[0], points[0]
    for point in points[1:]:
        if point == end + 1:
            end = point
            continue
        ranges.append((start, end))
        start = end = point
    ranges.append((start, end))
    return "".join(
        f"\\U{low:08x}" if low == high else f"\\U{low:08x}-\\U{high:08x}" for low, high in ranges
    )


INVISIBLE = re.compile(f"\\r(?!\\n)|[{_char_class(_code_points())}]")

_CONTROL_NAMES = {0x00: "NULL", 0x0D: "CARRIAGE RETURN", 0x1B: "ESCAPE", 0x7F: "DELETE"}


def char_name(char: str) -> str:
    point = ord(char)
    if point in _CONTROL_NAMES:
        return _CONTROL_NAMES[point]
    category = unicodedata.category(char)
    if category == "Cc":
        return "CONTROL CHARACTER"
    if category == "Cs":
        return "LONE SURROGATE"
    return unicodedata.name(char, "INVISIBLE CHARACTER")


def marker(char: str) -> str:
    return f"⟨U+{ord(char):04X}⟩"


def contains_invisible(value) -> bool:
    """Whether any string in a JSON-like value (keys included) has such a character."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if INVISIBLE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return False
