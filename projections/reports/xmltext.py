"""A minimal XML writer whose bytes depend only on the tree given to it.

The reports must be byte-identical for the same inputs (they are signed and compared), so
nothing here is left to a serializer's choices: elements in the order given, attributes in
the order given, a namespace declared where the caller puts it, two spaces of indentation,
UTF-8, a final newline. `xml.etree` would pick namespace prefixes (`ns0`) itself and keeps
them in process-wide state."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr


@dataclass(frozen=True)
class Node:
    """An element: text or children, never both (ISO 20022 messages have no mixed content)."""

    tag: str
    text: str | None = None
    children: Sequence[Node] = ()
    attrs: Sequence[tuple[str, str]] = field(default=())


def el(tag: str, *children: Node, text: str | None = None, **attrs: str) -> Node:
    """An element; keyword attributes keep the order they are written in."""
    return Node(tag, text, children, tuple(attrs.items()))


def _lines(node: Node, depth: int) -> Iterator[str]:
    pad = "  " * depth
    attrs = "".join(f" {k}={quoteattr(v)}" for k, v in node.attrs)
    if node.text is not None:
        yield f"{pad}<{node.tag}{attrs}>{escape(node.text)}</{node.tag}>"
    elif not node.children:
        yield f"{pad}<{node.tag}{attrs}/>"
    else:
        yield f"{pad}<{node.tag}{attrs}>"
        for child in node.children:
            yield from _lines(child, depth + 1)
        yield f"{pad}</{node.tag}>"


def to_bytes(root: Node) -> bytes:
    """The document: an XML declaration, then `root`, indented, UTF-8, ending in a newline."""
    body = "\n".join(_lines(root, 0))
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}\n'.encode()
