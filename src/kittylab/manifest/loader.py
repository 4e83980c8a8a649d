"""Read a lab manifest from YAML, keeping track of where each field was written.

The document is composed into PyYAML nodes first, so every field path
(``devices[3].zone``) can be mapped back to its line; then ``build_manifest`` validates
the plain data, and each problem it reports is given the file and line of its field (or of
the nearest enclosing entry, for a field that is missing).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from kittylab.manifest.model import LabManifest, ManifestError, ManifestProblem, build_manifest

# A manifest is a few hundred nodes; a cap stops an alias bomb ("billion laughs") from
# expanding into millions while the lines are indexed or the document is constructed. Every
# node counts once per place it appears, merged (``<<``) entries included: PyYAML copies
# each merged entry into the mapping that merges it, so a chain of merges of merges doubles
# the work per level just as a chain of aliases does.
MAX_NODES = 100_000


def load_manifest(path: Path) -> LabManifest:
    """Read and validate the manifest at ``path``.

    Raises ``ManifestError`` when the file cannot be read, is not YAML, or breaks a rule;
    every problem names the file (as given in ``path``), the line and the field."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problem = ManifestProblem("", f"cannot read the manifest: {exc}", file=source)
        raise ManifestError([problem]) from None
    return parse_manifest(text, source)


def parse_manifest(text: str, source: str = "<manifest>") -> LabManifest:
    """Validate manifest ``text``; ``source`` names it in problems (usually its path)."""
    data, lines = _compose(text, source)
    try:
        return build_manifest(data)
    except ManifestError as exc:
        located = [
            ManifestProblem(p.field, p.message, source, _line_of(p.field, lines))
            for p in exc.problems
        ]
        # Stable sort: problems on one line keep the order in which they were found.
        located.sort(key=lambda p: p.line or 0)
        raise ManifestError(located) from None
    except RecursionError:
        problem = ManifestProblem("", "nested too deeply to be a lab manifest", source)
        raise ManifestError([problem]) from None


def _compose(text: str, source: str) -> tuple[object, dict[str, int]]:
    """The plain data of the single YAML document in ``text`` and the 1-based line of
    every field path in it."""
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)  # checks the characters at once: inside the try
        node = loader.get_single_node()
        if node is None:
            return None, {}
        index = _LineIndex(source)
        index.walk(node, "")
        if index.problems:
            raise ManifestError(index.problems)
        return loader.construct_document(node), index.lines
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        message = f"not valid YAML: {exc.problem or exc.context}"
        raise ManifestError([ManifestProblem("", message, source, line)]) from None
    except yaml.YAMLError as exc:
        # Reader errors (a byte that is not text) carry a position but no mark.
        raise ManifestError([ManifestProblem("", f"not valid YAML: {exc}", source)]) from None
    except RecursionError:
        problem = ManifestProblem("", "nested too deeply to be a lab manifest", source)
        raise ManifestError([problem]) from None
    except (ValueError, OverflowError) as exc:
        # PyYAML converts scalars itself: a 5,000-digit integer or an impossible date
        # fails here rather than in our validation.
        problem = ManifestProblem("", f"a value cannot be read: {str(exc)[:200]}", source)
        raise ManifestError([problem]) from None
    finally:
        if loader is not None:
            loader.dispose()


class _LineIndex:
    """Walks a node tree recording where each field path is written. A mapping entry is
    located at its key, a list item at the item. Duplicate keys, which PyYAML would quietly
    resolve to the last one, are problems.

    Every node is counted once per place it appears, with aliases and merges expanded;
    past ``MAX_NODES`` the walk stops with a ``MarkedYAMLError``, before PyYAML constructs
    anything. An alias inside its own anchor is refused the same way (PyYAML would recurse
    until it runs out of stack)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: dict[str, int] = {"": 1}
        self.problems: list[ManifestProblem] = []
        self._visits = 0
        self._open: set[int] = set()
        self._sizes: dict[int, int] = {}  # id(node) -> expanded node count, see _size

    def walk(self, node: yaml.Node, path: str) -> None:
        self._count(node, 1)
        self._enter(node)
        try:
            if isinstance(node, yaml.MappingNode):
                self._walk_mapping(node, path)
            elif isinstance(node, yaml.SequenceNode):
                for i, item in enumerate(node.value):
                    child = f"{path}[{i}]"
                    self.lines[child] = item.start_mark.line + 1
                    self.walk(item, child)
        finally:
            self._open.discard(id(node))

    def _walk_mapping(self, node: yaml.MappingNode, path: str) -> None:
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                # Merged entries keep no lines of their own; problems in them are placed
                # at the mapping that merges them. They still count, with the key.
                self._count(key_node, self._size(key_node) + self._size(value_node))
                continue
            child = f"{path}.{key_node.value}" if path else str(key_node.value)
            line = key_node.start_mark.line + 1
            if child in seen:
                message = f"is given twice (first on line {seen[child]})"
                self.problems.append(ManifestProblem(child, message, self.source, line))
                continue
            seen[child] = line
            self.lines[child] = line
            self.walk(value_node, child)

    def _size(self, node: yaml.Node) -> int:
        """How many nodes ``node`` stands for with every alias and merge expanded, capped
        just past ``MAX_NODES``. Each distinct node is sized once (memoized), so sizing a
        merge-key bomb takes time in proportion to its text, not to its expansion."""
        known = self._sizes.get(id(node))
        if known is not None:
            return known
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        self._enter(node)
        try:
            size = 1
            for child in children:
                size = min(size + self._size(child), MAX_NODES + 1)
        finally:
            self._open.discard(id(node))
        self._sizes[id(node)] = size
        return size

    def _count(self, node: yaml.Node, nodes: int) -> None:
        self._visits += nodes
        if self._visits > MAX_NODES:
            raise yaml.MarkedYAMLError(
                problem=f"the document expands to more than {MAX_NODES} values "
                "(through aliases or << merge keys)",
                problem_mark=node.start_mark,
            )

    def _enter(self, node: yaml.Node) -> None:
        """Mark ``node`` as being walked; an alias back to it from inside is refused."""
        if id(node) in self._open:
            raise yaml.MarkedYAMLError(
                problem="an alias refers to its own anchor", problem_mark=node.start_mark
            )
        self._open.add(id(node))


def _line_of(field: str, lines: dict[str, int]) -> int:
    """The line of ``field``, else of its nearest enclosing path that was written."""
    path = field
    while path and path not in lines:
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return lines.get(path, 1)
