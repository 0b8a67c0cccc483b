"""Pure matchers: does a path, argv, module, callable or URL fall inside an allow-list."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from nofx.security.policy.model import IDENTIFIER, LOOPBACK_NAMES, OpenAIPolicy, PythonPolicy


def normal_absolute(path: str) -> bool:
    """An absolute path with no ``.``/``..``/empty segments (what realpath returns)."""
    if not path.startswith("/") or "\x00" in path:
        return False
    return os.path.normpath(path) == path and "//" not in path


def executable_allowed(resolved: str, allowed: Iterable[str]) -> bool:
    """Exact match of a resolved, normalised path; no prefixes, no traversal."""
    return normal_absolute(resolved) and resolved in set(allowed)


def argv_prefix_allowed(
    resolved_argv: tuple[str, ...], prefixes: Iterable[tuple[str, ...]]
) -> bool:
    """The argv (argv[0] already resolved) begins with one allowed prefix, element by element."""
    if not resolved_argv or not normal_absolute(resolved_argv[0]):
        return False
    return any(
        len(prefix) >= 1
        and len(resolved_argv) >= len(prefix)
        and tuple(resolved_argv[: len(prefix)]) == tuple(prefix)
        for prefix in prefixes
    )


def path_within(path: str, roots: Iterable[str]) -> bool:
    """``path`` is one of ``roots`` or below it, compared segment by segment."""
    if not normal_absolute(path):
        return False
    parts = PurePosixPath(path).parts
    for root in roots:
        if not normal_absolute(root):
            continue
        root_parts = PurePosixPath(root).parts
        if parts[: len(root_parts)] == root_parts:
            return True
    return False


def module_allowed(module: str, prefixes: Iterable[str]) -> bool:
    """``module`` is an allowed module or a submodule of one (``a.b`` allows ``a.b.c``, not ``a.bc``)."""
    return any(module == p or module.startswith(p + ".") for p in prefixes if p)


def parse_callable_target(target: object) -> tuple[str, str] | None:
    """``"pkg.mod:Qual.name"`` -> (module, qualname); None unless every part is an identifier."""
    if not isinstance(target, str) or target.count(":") != 1:
        return None
    module, qualname = target.split(":")
    if not all(IDENTIFIER.match(p) for p in module.split(".")):
        return None
    if not all(IDENTIFIER.match(p) for p in qualname.split(".")):
        return None
    return module, qualname


def callable_allowed(target: str, policy: PythonPolicy) -> bool:
    """Exactly listed, or inside an allowed module with no private (``_``) part on the way."""
    parsed = parse_callable_target(target)
    if parsed is None:
        return False
    if target in policy.allowed_callables:
        return True
    module, qualname = parsed
    if any(p.startswith("_") for p in qualname.split(".")):
        return False
    return module_allowed(module, policy.allowed_modules)


def is_loopback_host(host: str) -> bool:
    host = host.lower().rstrip(".")
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_origin(url: object) -> str | None:
    """``scheme://host:port`` with the default port filled in; None for anything unusable."""
    if not isinstance(url, str) or len(url) > 2048 or any(c.isspace() for c in url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if scheme not in ("http", "https") or not host or parts.username or parts.password:
        return None
    if "@" in parts.netloc:
        return None
    port = port or (443 if scheme == "https" else 80)
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


def base_url_allowed(base_url: object, policy: OpenAIPolicy) -> bool:
    origin = url_origin(base_url)
    return origin is not None and origin in policy.allowed_base_urls
