"""stream-release-lint: find, in a project's source, the streaming responses that will pin a
database connection, before they reach production.

    stream-release-lint [--format text|json] [--select SR001,SR002] PATH ...

SR001  a streaming response built in a function that used the ORM first, with no release
       (the connection stays checked out until the last chunk is sent)
SR002  queryset.iterator() in a streaming body: its cursor keeps the connection for the whole
       body, and no release can free it
SR003  a query in a streaming body (a queryset iterated, an ORM call): the connection is kept
       across chunks unless something gives it back after each

A line ending in `# noqa: SR001` (or `# noqa` alone) is not reported. Exit status: 0 nothing
found, 1 findings, 2 a usage error or a file that does not parse. It reads source only (the
ast module): it imports nothing of the project. As a pre-commit hook:

    - repo: local
      hooks:
        - id: stream-release-lint
          name: stream-release-lint
          entry: stream-release-lint
          language: python
          additional_dependencies: [django-stream-release]
          types: [python]
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

STREAMING = {"StreamingHttpResponse", "FileResponse", "StreamingCSVResponse"}
RELEASING = {"ReleasingStreamingHttpResponse"}
RELEASES = {"release_connections", "arelease_connections", "close_all"}
# calls that reach the database through the ORM, on a chain that has a manager (`.objects`) or
# anywhere for the writes and reads of an instance
QUERYSET_METHODS = {
    "all", "filter", "exclude", "get", "create", "update", "delete", "count", "exists", "first", "last",
    "values", "values_list", "aggregate", "annotate", "order_by", "iterator", "bulk_create", "bulk_update",
    "get_or_create", "update_or_create", "in_bulk", "raw", "select_related", "prefetch_related", "only", "defer",
    "acount", "aexists", "aget", "afirst", "alast", "acreate", "aupdate", "adelete", "aaggregate", "ain_bulk",
    "aiterator", "aget_or_create", "aupdate_or_create", "abulk_create",
}  # fmt: skip
INSTANCE_WRITES = {"save", "asave", "refresh_from_db", "arefresh_from_db"}

MESSAGES = {
    "SR001": "{what} after using the ORM, with nothing giving the connection back: it stays checked out until "
    "the last chunk is sent. Return a stream_release.ReleasingStreamingHttpResponse (or set "
    "STREAM_RELEASE_ALL_STREAMS = True)",
    "SR002": "queryset.iterator() in a streaming body keeps its cursor, and the connection, open for the whole "
    "body; no release can free it. Read it with stream_release.batches(queryset, size) instead",
    "SR003": "{what} in a streaming body keeps the connection across chunks. Read with stream_release.batches(), "
    "or give it back after each chunk (arelease_connections(), STREAM_RELEASE_ALL_STREAMS = True)",
}
NOQA = re.compile(r"#\s*noqa(?::\s*(?P<codes>[A-Z]+[0-9]+(?:[,\s]+[A-Z]+[0-9]+)*))?", re.IGNORECASE)


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    col: int
    code: str
    message: str

    def text(self) -> str:
        return f"{self.path}:{self.line}:{self.col + 1}: {self.code} {self.message}"


def _name(node: ast.AST) -> str | None:
    """The called name: `f` for f(...), `attr` for x.attr(...)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _chain(node: ast.AST) -> list[str]:
    """The names along an attribute/call chain, outermost last: Item.objects.filter(...).values
    gives ["Item", "objects", "filter", "values"]."""
    names: list[str] = []
    while True:
        if isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Attribute):
            names.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Subscript):
            node = node.value
        else:
            if isinstance(node, ast.Name):
                names.append(node.id)
            return names[::-1]


def _orm_use(node: ast.AST) -> str | None:
    """What ORM use `node` is (a call, or an iteration's target), or None."""
    if isinstance(node, ast.Call):
        name = _name(node.func)
        chain = _chain(node.func)
        if name in INSTANCE_WRITES:
            return f"{name}()"
        if name in QUERYSET_METHODS and "objects" in chain[:-1]:
            return f"{'.'.join(chain[-3:])}()"
        if name == "cursor" and chain[:1] in (["connection"], ["connections"]):
            return "connection.cursor()"
    return None


def _queryset_expr(node: ast.AST) -> bool:
    """An expression that is a queryset: a manager chain (Item.objects..., not .iterator())."""
    chain = _chain(node)
    return "objects" in chain and (not chain or chain[-1] not in ("iterator", "aiterator"))


def _walk_own(node: ast.AST) -> Iterator[ast.AST]:
    """The nodes of a function's own body, not of the functions and classes defined in it."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        yield child
        yield from _walk_own(child)


def _is_generator(func: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(isinstance(n, (ast.Yield, ast.YieldFrom)) for n in _walk_own(func))


class _Module:
    def __init__(self, path: str, tree: ast.Module, lines: list[str]) -> None:
        self.path, self.tree, self.lines = path, tree, lines
        self.findings: list[Finding] = []
        self.generators = {
            n.name: n
            for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and _is_generator(n)
        }

    def add(self, node: ast.AST, code: str, **fields: str) -> None:
        line, col = getattr(node, "lineno", 1), getattr(node, "col_offset", 0)
        if _suppressed(self.lines[line - 1] if line <= len(self.lines) else "", code):
            return
        finding = Finding(self.path, line, col, code, MESSAGES[code].format(**fields))
        if finding not in self.findings:
            self.findings.append(finding)

    def check(self) -> list[Finding]:
        for func in ast.walk(self.tree):
            if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self._function(func)
        self.findings.sort(key=lambda f: (f.line, f.col, f.code))
        return self.findings

    def _function(self, func: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        """SR001 for the streaming responses this function builds; SR002/SR003 for their bodies."""
        nodes = sorted(_walk_own(func), key=lambda n: (getattr(n, "lineno", 0), getattr(n, "col_offset", 0)))
        bound: dict[str, ast.AST] = {}  # local name -> the value last assigned to it
        used_orm = released = False
        for node in nodes:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                bound[node.targets[0].id] = node.value
            if _orm_use(node):
                used_orm = True
            if isinstance(node, ast.Call):
                name = _name(node.func)
                if name in RELEASES or (name == "close" and _chain(node.func)[:1] == ["connection"]):
                    released = True
                if name in STREAMING and name not in RELEASING:
                    if used_orm and not released:
                        self.add(node, "SR001", what=f"{name} built")
                    self._bodies(node, bound)
                elif name in RELEASING or (name == "from_queryset" and "StreamingCSVResponse" in _chain(node.func)):
                    self._bodies(node, bound)

    def _bodies(self, call: ast.Call, bound: dict[str, ast.AST]) -> None:
        """The streaming body a response call is given: a generator expression, a generator
        function's call, or a name bound to either in the same function."""
        for arg in [*call.args[:1], *(k.value for k in call.keywords if k.arg == "streaming_content")]:
            body = bound.get(arg.id, arg) if isinstance(arg, ast.Name) else arg
            if isinstance(body, (ast.GeneratorExp, ast.ListComp)):
                self._body(body)
            elif isinstance(body, ast.Call) and _name(body.func) in self.generators:
                self._body(self.generators[str(_name(body.func))])
            elif isinstance(body, ast.Call) and _name(body.func) in ("map", "filter"):
                for inner in body.args[1:]:
                    inner_body = bound.get(inner.id, inner) if isinstance(inner, ast.Name) else inner
                    if isinstance(inner_body, ast.Call) and _name(inner_body.func) in self.generators:
                        self._body(self.generators[str(_name(inner_body.func))])
                    elif isinstance(inner_body, ast.GeneratorExp):
                        self._body(inner_body)
            if isinstance(call.func, ast.Attribute) and call.func.attr == "from_queryset":
                self.add(call, "SR002")  # django-fast-export: iterates queryset.iterator() in its body

    def _body(self, body: ast.AST) -> None:
        nodes = [body, *_walk_own(body)]
        seen: set[int] = set()  # said once (a queryset iterated, a call and its chain), or batches()' own
        for node in nodes:
            if isinstance(node, ast.Call) and _name(node.func) in ("batches", "abatches"):
                seen.update(id(n) for n in ast.walk(node))  # one query per batch, given back after each
            elif isinstance(node, ast.Call) and _name(node.func) in ("iterator", "aiterator"):
                self.add(node, "SR002")
                seen.update(id(n) for n in ast.walk(node))
            elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)) and _queryset_expr(node.iter):
                self.add(node.iter, "SR003", what="a queryset iterated")
                seen.update(id(n) for n in ast.walk(node.iter))
        for node in nodes:
            if id(node) not in seen and (use := _orm_use(node)):
                self.add(node, "SR003", what=use)
                seen.update(id(n) for n in ast.walk(node))


def _suppressed(line: str, code: str) -> bool:
    match = NOQA.search(line)
    if match is None:
        return False
    codes = match.group("codes")
    return codes is None or code.upper() in re.split(r"[,\s]+", codes.upper())


def check_source(source: str, path: str = "<string>", select: Sequence[str] = ()) -> list[Finding]:
    """The findings of one module's source (SyntaxError if it does not parse)."""
    tree = ast.parse(source, filename=path)
    found = _Module(path, tree, source.splitlines()).check()
    return [f for f in found if not select or f.code in select]


def _files(paths: Sequence[str]) -> Iterator[Path]:
    for given in paths:
        path = Path(given)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*.py") if not any(part.startswith(".") for part in p.parts))
        else:
            yield path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="stream-release-lint",
        description="Find the Django streaming responses that will pin a database connection.",
        epilog="; ".join(f"{code}: {text.split('.')[0]}" for code, text in MESSAGES.items()),
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="files or directories to read")
    parser.add_argument("--format", choices=["text", "json"], default="text", help="text (default) or json")
    parser.add_argument(
        "--select", default="", metavar="CODES", help="only these codes, comma-separated (default: all)"
    )
    args = parser.parse_args(argv)
    select = [c.strip().upper() for c in args.select.split(",") if c.strip()]
    unknown = [c for c in select if c not in MESSAGES]
    if unknown:
        parser.error(f"--select: unknown code {', '.join(unknown)}; the codes are {', '.join(MESSAGES)}")
    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        parser.error(f"PATH: {', '.join(missing)} does not exist")
    findings: list[Finding] = []
    failed = False
    for path in _files(args.paths):
        try:
            findings += check_source(path.read_text(encoding="utf-8"), str(path), select)
        except (SyntaxError, UnicodeDecodeError) as exc:
            print(f"{path}: cannot be read as Python: {exc}", file=sys.stderr)
            failed = True
    if args.format == "json":
        print(json.dumps([asdict(f) for f in findings], indent=2))
    else:
        for finding in findings:
            print(finding.text())
    if failed:
        return 2
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
