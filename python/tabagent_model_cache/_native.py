"""Loading libtabcache with cffi (ABI mode, no compiler needed at install or import).

The cdef is generated from the C header at import time, never copied by hand: the build puts
``tabcache.h`` (the committed ``include/tabcache.h``) beside the library in the package, and
:func:`cdef_from_header` evaluates its preprocessor conditionals as a C11 compiler would, drops
the directives and comments cffi cannot parse, and keeps the integer ``#define`` constants.

Where things are found:

- the library: ``$TABCACHE_LIBRARY`` if set (development against a ``cargo build``), else the
  ``libtabcache`` shipped inside this package;
- the header: ``$TABCACHE_HEADER`` if set, else ``tabcache.h`` inside this package, else the
  repository's ``include/tabcache.h`` when running from a source checkout.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Dict, List, Tuple

from cffi import FFI

_PACKAGE_DIR = Path(__file__).resolve().parent

# What a C11 compiler that is not C++ sees: the header's C23 and C++ branches stay out.
_PREDEFINED: Dict[str, str] = {"__STDC__": "1", "__STDC_VERSION__": "201112L"}


def library_file_name() -> str:
    """The platform's file name of the shared library."""
    if sys.platform == "win32":
        return "tabcache.dll"
    if sys.platform == "darwin":
        return "libtabcache.dylib"
    return "libtabcache.so"


def library_path() -> str:
    """Where the shared library is loaded from (see the module docstring)."""
    override = os.environ.get("TABCACHE_LIBRARY")
    if override:
        return override
    bundled = _PACKAGE_DIR / library_file_name()
    if not bundled.exists():
        raise ImportError(
            f"libtabcache is not in the package ({bundled} is missing): reinstall with "
            "'pip install ./python' from the tabcache repository, or set TABCACHE_LIBRARY to "
            "the path of a built library"
        )
    return str(bundled)


def header_path() -> Path:
    """Where the C header the cdef comes from is read (see the module docstring)."""
    override = os.environ.get("TABCACHE_HEADER")
    if override:
        return Path(override)
    candidates = [_PACKAGE_DIR / "tabcache.h", _PACKAGE_DIR.parent.parent / "include" / "tabcache.h"]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise ImportError(
        "tabcache.h is neither in the package nor in a source checkout "
        f"(looked at {', '.join(str(c) for c in candidates)}); set TABCACHE_HEADER"
    )


def _strip_comments(text: str) -> str:
    # The header has no string literal containing comment markers, so no lexer is needed;
    # newlines inside block comments are kept so line structure (directives) survives.
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


_CONDITION_TOKEN = re.compile(r"\s*(defined\s*\(\s*\w+\s*\)|defined\s+\w+|\w+|\|\||&&|[<>=!]=|[<>()!])")
_PYTHON_OPERATOR = {"||": " or ", "&&": " and ", "!": " not ", "(": "(", ")": ")"}


def _eval_condition(expr: str, defines: Dict[str, str]) -> bool:
    """Evaluate an ``#if`` expression made of ``defined``, integer macros and literals,
    comparisons, ``!``, ``&&``, ``||`` and parentheses (what cbindgen emits)."""
    python: List[str] = []
    position = 0
    expr = expr.strip()
    while position < len(expr):
        match = _CONDITION_TOKEN.match(expr, position)
        if not match:
            raise ValueError(f"unsupported #if expression in tabcache.h: {expr!r}")
        token = match.group(1)
        position = match.end()
        if token.startswith("defined"):
            python.append(" 1 " if re.findall(r"\w+", token)[1] in defines else " 0 ")
        elif re.fullmatch(r"\d+[uUlL]*", token):
            python.append(" " + token.rstrip("uUlL") + " ")
        elif re.fullmatch(r"\w+", token):
            # An undefined identifier is 0 in #if, as in C.
            value = defines.get(token, "0").rstrip("uUlL") or "0"
            if not re.fullmatch(r"-?\d+", value):
                raise ValueError(f"#if uses macro {token} = {value!r}, which is not an integer")
            python.append(f" ({value}) ")
        else:
            python.append(_PYTHON_OPERATOR.get(token, f" {token} "))
    # Only digits, comparisons, and/or/not and parentheses remain.
    return bool(eval("".join(python) or "0", {"__builtins__": {}}, {}))  # noqa: S307


def cdef_from_header(text: str) -> Tuple[str, Dict[str, str]]:
    """The cffi cdef for a C header's text, and the object-like macros it defines.

    Conditionals are evaluated (``#if``/``#ifdef``/``#ifndef``/``#elif``/``#else``/``#endif``),
    every directive and comment is dropped, and integer macros come back as ``#define NAME N``
    lines, the one form of ``#define`` cffi accepts.
    """
    defines: Dict[str, str] = dict(_PREDEFINED)
    declared: Dict[str, str] = {}
    # Each level: (this branch active, some branch of this #if already taken, parent active)
    stack: List[Tuple[bool, bool, bool]] = []
    active = True
    lines: List[str] = []
    for raw in _strip_comments(text).splitlines():
        line = raw.strip()
        directive = re.match(r"#\s*(\w+)\s*(.*)", line)
        if not directive:
            if active and line:
                lines.append(raw)
            continue
        name, rest = directive.group(1), directive.group(2).strip()
        if name in ("if", "ifdef", "ifndef"):
            if name == "if":
                taken = active and _eval_condition(rest, defines)
            elif name == "ifdef":
                taken = active and rest in defines
            else:
                taken = active and rest not in defines
            stack.append((taken, taken, active))
            active = taken
        elif name == "elif":
            _, done, parent = stack.pop()
            taken = parent and not done and _eval_condition(rest, defines)
            stack.append((taken, done or taken, parent))
            active = taken
        elif name == "else":
            _, done, parent = stack.pop()
            taken = parent and not done
            stack.append((taken, True, parent))
            active = taken
        elif name == "endif":
            _, _, active = stack.pop()
        elif name == "define" and active:
            macro = re.match(r"(\w+)(?:\s+(.*))?$", rest)
            if macro and "(" not in macro.group(1):
                defines[macro.group(1)] = (macro.group(2) or "").strip()
                declared[macro.group(1)] = defines[macro.group(1)]
        elif name == "undef" and active:
            defines.pop(rest, None)
            declared.pop(rest, None)
        # include, pragma, error, line: nothing for cffi
    if stack:
        raise ValueError("tabcache.h has an #if without its #endif")
    constants = [
        f"#define {name} {value}" for name, value in declared.items() if re.fullmatch(r"-?\d+", value)
    ]
    return "\n".join(lines + constants) + "\n", declared


def _load():
    header = header_path()
    cdef, macros = cdef_from_header(header.read_text(encoding="utf-8"))
    ffi = FFI()
    ffi.cdef(cdef)
    lib = ffi.dlopen(library_path())
    return ffi, lib, macros, header


ffi, lib, HEADER_MACROS, HEADER_PATH = _load()

#: The version the header declares (TC_VERSION), and the one of the library actually loaded.
HEADER_VERSION: str = HEADER_MACROS.get("TC_VERSION", '""').strip('"')
LIBRARY_VERSION: str = ffi.string(lib.tc_version()).decode("utf-8")
