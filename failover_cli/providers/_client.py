"""The HTTP clients adapters share: which proxy a URL goes through and which CAs are trusted.

Proxies follow httpx's ``trust_env`` rules, read from ``env`` (default ``os.environ``):
HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and NO_PROXY, either case, lowercase winning, uppercase
HTTP_PROXY ignored under CGI (REQUEST_METHOD set); a per-provider ``proxy`` replaces them all,
as httpx's ``proxy=`` does. Only ``http://`` proxies are spoken to (https through CONNECT);
any other scheme is refused when the client is made.

https is verified against the OS trust store (on macOS and Windows through ``truststore``, the
platform's verifier; elsewhere the OpenSSL store the distribution maintains, found the way
``truststore`` finds it, certifi's bundle when there is none), plus SSL_CERT_FILE, SSL_CERT_DIR
and the provider's ``ca_bundle``. Nothing is loaded until the first https connection, so a
chain of loopback servers never pays for it; ``verify=False`` is only ever explicit.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx

from ._transport import (
    AsyncioTransport,
    DirectResponse,
    Proxy,
    ProxyRoute,
    StaleConnection,
    TLSError,
)

if TYPE_CHECKING:
    import ssl

    from httpx._utils import URLPattern

    from ..types import ProviderConfig

__all__ = [
    "USER_AGENT",
    "ClientSet",
    "ProviderClient",
    "StaleConnection",
    "TLSContext",
    "TLSError",
    "make_client",
    "proxy_mounts",
    "proxy_router",
]

USER_AGENT = "failover/0.1"
Headers = tuple[tuple[str, str], ...]
_Prepared = tuple[httpx.URL, httpx.Headers, list[tuple[bytes, bytes]]]  # URL, head, raw head

# Where distributions keep their CA bundle, when OpenSSL's compiled-in paths are empty: the
# list truststore's OpenSSL backend searches (after certifi-system-store by Christian Heimes).
_CA_FILES = (
    "/etc/ssl/cert.pem",  # Alpine, Arch, Fedora 34-43, OpenWRT, RHEL 9-10, BSD
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",  # Fedora 44+, RHEL 11+
    "/etc/pki/tls/cert.pem",  # Fedora <= 34, RHEL <= 9, CentOS <= 9
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu
    "/etc/ssl/ca-bundle.pem",  # SUSE
)
_ENV_PROXY_SOURCE = "the HTTP_PROXY / HTTPS_PROXY / ALL_PROXY environment variables"


class ProviderClient(httpx.AsyncClient):
    """The client :func:`make_client` returns: an ``httpx.AsyncClient`` whose :meth:`open`
    hands a request to its :class:`AsyncioTransport` directly while nothing is set on the
    client that httpx's client layer would apply (auth, cookies, event hooks, query params, a
    base URL, redirects); otherwise it goes through ``build_request`` and ``send`` as usual.
    The direct path keeps no Set-Cookie: a provider's cookies are not sent back with later
    requests, which may come from other users of a shared gateway."""

    def __init__(self, *, transport: AsyncioTransport, **kwargs: Any) -> None:
        super().__init__(transport=transport, **kwargs)
        self._direct = transport
        self._prepared: dict[tuple[Any, ...], _Prepared] = {}

    def _adds_nothing(self) -> bool:
        hooks = self.event_hooks
        return not (
            self.auth is not None
            or self.follow_redirects
            or hooks["request"]
            or hooks["response"]
            or self.params
            or self.cookies
            or self.base_url.raw_host
        )

    async def open(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        *,
        content: bytes | None,
        timeout: httpx.Timeout,
        extensions: dict[str, Any],
    ) -> httpx.Response:
        """Send a request; the response comes back with its body unread (``stream=True``)."""
        if not self._adds_nothing() or self.is_closed:
            request = self.build_request(
                method, url, headers=headers, content=content, timeout=timeout,
                extensions=extensions,
            )  # fmt: skip
            return await self.send(request, stream=True)
        target, head, _ = self._prepared_for(url, headers)
        extensions["timeout"] = timeout.as_dict()
        body = b"" if content is None else content
        request = httpx.Request(
            method, target, headers=head, stream=httpx.ByteStream(body), extensions=extensions
        )
        if content is not None or method in _BODY_METHODS:  # as httpx's own Content-Length
            request.headers["Content-Length"] = str(len(body))
        request.read()
        response = await self._direct.handle_async_request(request)
        response.request = request
        return response

    async def post_direct(
        self,
        url: str,
        headers: dict[str, str],
        content: bytes,
        *,
        timeout: httpx.Timeout,
        deadline: float | None,
    ) -> DirectResponse | None:
        """POST ``content`` with the head :meth:`open` would send, through the transport's
        direct path (no httpx Request or Response); None when that path does not apply
        (something set on the client, a proxy): then use :meth:`open`."""
        if self.is_closed or not self._adds_nothing():
            return None
        target, _, raw = self._prepared_for(url, headers)
        head = [*raw, (b"Content-Length", str(len(content)).encode("ascii"))]
        return await self._direct.post(
            target, head, content, timeouts=timeout.as_dict(), deadline=deadline
        )

    def _prepared_for(self, url: str, headers: dict[str, str]) -> _Prepared:
        key = (url, tuple(self.headers.raw), *headers.items())  # the client's may change
        prepared = self._prepared.get(key)
        if prepared is None:
            if len(self._prepared) >= _URLS_KEPT:
                self._prepared.clear()
            prepared = self._prepared[key] = self._prepare(url, headers)
        return prepared

    def _prepare(self, url: str, headers: dict[str, str]) -> _Prepared:
        """The parsed URL, and the head httpx would build for it less Content-Length (as
        httpx Headers, and raw): Host first, then the client's headers overridden by
        ``headers`` (by lower-case name)."""
        target = httpx.URL(url)
        merged = dict(self.headers.multi_items())  # lower-case names, as ``headers``' own
        merged.update(headers)
        head = httpx.Headers(merged)
        if "Host" not in head and target.host:
            head = httpx.Headers([(b"Host", target.netloc), *head.raw])
        return target, head, head.raw


_URLS_KEPT = 64  # prepared (URL, headers) pairs a client remembers: a chain's few endpoints
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})  # a Content-Length even when empty


def make_client(
    *,
    env: Mapping[str, str] | None = None,
    proxy: str | None = None,
    ca_bundle: str | None = None,
    verify: bool = True,
    headers: Headers = (),
    tls: TLSContext | None = None,
) -> ProviderClient:
    """A pooled HTTP/1.1 client over :class:`AsyncioTransport`: no httpcore or anyio to
    import, proxies from ``proxy`` or ``env``, CAs loaded on the first https connection, no
    redirects, ``headers`` sent with every request. ``tls`` shares one :class:`TLSContext`
    between clients (see :class:`ClientSet`). ValueError for an unusable proxy URL."""
    verifier: TLSContext | bool = False
    if verify:
        verifier = tls if tls is not None else TLSContext(env, ca_bundle=ca_bundle)
    transport = AsyncioTransport(
        verify=verifier,
        proxy=proxy_router(proxy, env),
        # Idle connections kept for reuse: a library router at concurrency 50 should not churn.
        max_connections=100,
        max_keepalive=50,
        keepalive_expiry=30,
    )
    client_headers = httpx.Headers({"user-agent": USER_AGENT})
    for name, value in headers:
        client_headers[name] = value
    return ProviderClient(
        transport=transport,
        trust_env=False,  # the environment is read here, from ``env``
        follow_redirects=False,
        timeout=httpx.Timeout(30.0, connect=5.0),
        headers=client_headers,
    )


class ClientSet:
    """One client per distinct network setting among a chain's providers (proxy, CA bundle,
    verification); clients with the same CA bundle share one TLS context. Per-provider
    headers are the adapter's business (they may hold ``${VAR}`` secrets), not the client's."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = env
        self._clients: dict[tuple[str | None, str | None, bool], httpx.AsyncClient] = {}
        self._tls: dict[str | None, TLSContext] = {}

    def for_config(self, config: ProviderConfig) -> httpx.AsyncClient:
        """The client for ``config``'s network settings, made on first use."""
        key = (config.proxy or None, config.ca_bundle or None, config.verify)
        client = self._clients.get(key)
        if client is None:
            tls = self._tls.get(key[1])
            if tls is None:
                tls = self._tls[key[1]] = TLSContext(self._env, key[1])
            client = self._clients[key] = make_client(
                env=self._env, proxy=key[0], ca_bundle=key[1], verify=key[2], tls=tls
            )
        return client

    async def aclose(self) -> None:
        """Close every client made."""
        for client in self._clients.values():
            await client.aclose()


# --- proxies ----------------------------------------------------------------------------------


def proxy_router(proxy: str | None, env: Mapping[str, str] | None) -> ProxyRoute | None:
    """What the transport asks for each URL's proxy; None when no URL can be proxied."""
    if proxy:
        chosen = _parse_proxy(proxy, "providers[].proxy")
        return lambda url: chosen
    mounts = proxy_mounts(env)
    if not any(mounts.values()):
        return None
    from httpx._utils import URLPattern

    rules = [
        (URLPattern(key), None if url is None else _parse_proxy(url, _ENV_PROXY_SOURCE))
        for key, url in mounts.items()
    ]
    rules.sort(key=lambda rule: rule[0])  # most specific first, as httpx orders its mounts
    return _Router(rules)


class _Router:
    """The first matching rule's proxy (None: direct), remembered per (scheme, host, port)."""

    __slots__ = ("_memo", "_rules")

    def __init__(self, rules: list[tuple[URLPattern, Proxy | None]]) -> None:
        self._rules = rules
        self._memo: dict[tuple[str, str, int | None], Proxy | None] = {}

    def __call__(self, url: httpx.URL) -> Proxy | None:
        key = (url.scheme, url.host, url.port)
        if key in self._memo:
            return self._memo[key]
        chosen = next((proxy for pattern, proxy in self._rules if pattern.matches(url)), None)
        if len(self._memo) >= 256:
            self._memo.clear()
        self._memo[key] = chosen
        return chosen


def _parse_proxy(url: str, source: str) -> Proxy:
    try:
        return Proxy.from_url(url if "://" in url else "http://" + url)
    except (ValueError, httpx.InvalidURL) as exc:
        raise ValueError(
            f"{source}: {exc}; failover connects through http:// proxies only "
            "(not https:// or socks)"
        ) from None


def proxy_mounts(env: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """httpx's ``get_environment_proxies()`` for ``env``: URL patterns (``all://``,
    ``https://``, ``all://*example.com``...) to a proxy URL, or to None for NO_PROXY hosts."""
    if env is None:
        from urllib.request import getproxies  # also the OS settings on macOS and Windows

        info = getproxies()
    else:
        info = _environment_proxies(env)
    mounts: dict[str, str | None] = {}
    for scheme in ("http", "https", "all"):
        if info.get(scheme):
            url = info[scheme]
            mounts[f"{scheme}://"] = url if "://" in url else f"http://{url}"
    for host in (part.strip() for part in info.get("no", "").split(",")):
        if host == "*":
            return {}
        if host:
            mounts[_no_proxy_pattern(host)] = None
    return mounts


def _no_proxy_pattern(host: str) -> str:
    """The URL pattern of one NO_PROXY entry, as curl and httpx read them."""
    from httpx._utils import is_ipv4_hostname, is_ipv6_hostname

    if "://" in host:
        return host
    if is_ipv4_hostname(host) or host.lower() == "localhost":
        return f"all://{host}"
    if is_ipv6_hostname(host):
        return f"all://[{host}]"
    return f"all://*{host}"  # example.com: it and its subdomains; .example.com: subdomains


def _environment_proxies(env: Mapping[str, str]) -> dict[str, str]:
    """``urllib.request.getproxies_environment()`` reading ``env`` instead of os.environ."""
    proxies: dict[str, str] = {}
    lowercase: list[tuple[str, str]] = []
    for name, value in env.items():
        if len(name) > 5 and name[-6] == "_" and name[-5:].lower() == "proxy":
            key = name[:-6].lower()
            if value:
                proxies[key] = value
            if name[-6:] == "_proxy":
                lowercase.append((key, value))
    if "REQUEST_METHOD" in env:  # CGI: HTTP_PROXY may come from a client's Proxy: header
        proxies.pop("http", None)
    for key, value in lowercase:  # lowercase wins, and an empty one unsets
        if value:
            proxies[key] = value
        else:
            proxies.pop(key, None)
    return proxies


# --- certificates -----------------------------------------------------------------------------


class TLSContext:
    """The SSLContext https connections verify with, built on the first call and kept.

    The OS trust store, plus ``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` from ``env`` (default
    ``os.environ``), plus ``ca_bundle`` (a file or a hashed directory). A source that cannot be
    loaded raises :class:`TLSError` naming it, on every call until fixed."""

    __slots__ = ("_ca_bundle", "_cert_dir", "_cert_file", "_context")

    def __init__(self, env: Mapping[str, str] | None = None, ca_bundle: str | None = None):
        env = os.environ if env is None else env
        self._cert_file = env.get("SSL_CERT_FILE") or None
        self._cert_dir = env.get("SSL_CERT_DIR") or None
        self._ca_bundle = ca_bundle or None
        self._context: ssl.SSLContext | None = None

    def __call__(self) -> ssl.SSLContext:
        if self._context is None:
            context, loaded = _os_trust_store()
            extra = [
                ("SSL_CERT_FILE", self._cert_file),
                ("SSL_CERT_DIR", self._cert_dir),
                ("providers[].ca_bundle", self._ca_bundle),
            ]
            for source, path in extra:
                if path and os.path.realpath(path) not in loaded:
                    _load(context, source, path)
            context.set_alpn_protocols(["http/1.1"])
            self._context = context
        return self._context


def _os_trust_store() -> tuple[ssl.SSLContext, set[str]]:
    """A verifying context on the OS trust store, and the real paths it loaded.

    On Linux and the BSDs ``truststore`` only points OpenSSL at the distribution's store, and
    does it again on every connection (re-reading the bundle: see bench/README.md), so the
    store is loaded here once instead. os.environ's SSL_CERT_* are not consulted here."""
    import ssl

    if sys.platform in ("darwin", "win32"):
        import truststore

        return truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT), set()
    paths = ssl.get_default_verify_paths()
    cafile = paths.openssl_cafile if os.path.isfile(paths.openssl_cafile) else None
    capath = paths.openssl_capath if _hashed_certs_in(paths.openssl_capath) else None
    if cafile is None and capath is None:
        cafile = next((path for path in _CA_FILES if os.path.isfile(path)), None)
    if cafile is None and capath is None:  # no CA certificates installed: certifi's bundle
        import certifi

        cafile = certifi.where()
    context = ssl.create_default_context(cafile=cafile, capath=capath)
    return context, {os.path.realpath(p) for p in (cafile, capath) if p}


def _load(context: ssl.SSLContext, source: str, path: str) -> None:
    """Add the CA certificates at ``path`` (a PEM file or a hashed directory)."""
    import ssl

    try:
        if not os.path.isdir(path):
            context.load_verify_locations(cafile=path)
            return
        if not _hashed_certs_in(path):
            raise FileNotFoundError("no hashed certificate names in it: run `openssl rehash`")
        context.load_verify_locations(capath=path)
    except (OSError, ssl.SSLError) as exc:
        detail = getattr(exc, "reason", None) or exc.strerror or str(exc)
        raise TLSError(
            f"TLS: cannot load the CA certificates of {source} {path} ({detail}); "
            "fix the path or unset it"
        ) from exc


def _hashed_certs_in(directory: str) -> bool:
    """Whether ``directory`` holds certificates under OpenSSL's hashed names (``5ad8a5d6.0``)."""
    try:
        names = os.listdir(directory)
    except OSError:
        return False
    return any(len(n) == 10 and n[8] == "." and n[9].isdigit() for n in names)
