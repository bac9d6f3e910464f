"""Networks users have: proxies (a real proxy.py on loopback), CA bundles, TLS failures with a
message that says what to fix, Happy Eyeballs, and what a plain chain does not pay for.

Every server, the proxy included, listens on 127.0.0.1 (the Happy Eyeballs test also binds
127.0.0.2); names that are not IP literals are answered by a stub resolver, never by DNS.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import httpx
import pytest
import trustme
from hypothesis import given, settings
from hypothesis import strategies as st
from test_transport import GUARD, Server, dropping_address, serving

from failover_cli.providers._client import (
    ClientSet,
    TLSError,
    make_client,
    proxy_mounts,
    proxy_router,
)
from failover_cli.providers._transport import AsyncioTransport, Proxy
from failover_cli.types import ProviderConfig

# --- a real proxy server ----------------------------------------------------------------------


class ProxyServer:
    """proxy.py (``pip install proxy.py``) in its own process group on 127.0.0.1."""

    def __init__(self, workdir: Path, *flags: str) -> None:
        self.log = workdir / "access.log"
        port_file = workdir / "port"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "proxy", "--hostname", "127.0.0.1", "--port", "0",
             "--port-file", str(port_file), "--num-workers", "1", "--num-acceptors", "1",
             "--log-level", "INFO", "--log-file", str(self.log), *flags],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        for _ in range(400):  # up to ~20 s for a slow machine
            if port_file.exists() and port_file.read_text().strip():
                break
            if self.proc.poll() is not None:
                raise RuntimeError("proxy.py exited at start")
            time.sleep(0.05)
        else:
            self.stop()
            raise RuntimeError("proxy.py did not start")
        self.port = int(port_file.read_text())
        self.url = f"http://127.0.0.1:{self.port}"

    async def saw(self, text: str) -> str:
        """The access-log line containing ``text`` (the worker writes it after answering)."""
        for _ in range(500):
            for line in self.log.read_text().splitlines() if self.log.exists() else ():
                if text in line:
                    return line
            await asyncio.sleep(0.01)
        raise AssertionError(f"the proxy never logged {text!r}")

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the proxy and its workers
        except ProcessLookupError:
            return
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory) -> Iterator[ProxyServer]:
    server = ProxyServer(tmp_path_factory.mktemp("proxy"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def auth_proxy(tmp_path_factory) -> Iterator[ProxyServer]:
    server = ProxyServer(tmp_path_factory.mktemp("auth-proxy"), "--basic-auth", "ann:s3cret")
    yield server
    server.stop()


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- certificates -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_pem(ca, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("ca") / "corporate-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def tls_server(ca: trustme.CA, *names: str, **validity: datetime.datetime) -> Server:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*(names or ("127.0.0.1",)), **validity).configure_cert(context)
    return Server(serving(lambda index, head: head.split(b" ")[1]), tls=context)


# --- proxies ----------------------------------------------------------------------------------


async def test_plain_http_goes_through_the_proxy_named_by_HTTP_PROXY(proxy):
    path = "/" + uuid.uuid4().hex
    async with Server(serving(lambda i, head: head.split(b" ")[1])) as server:
        async with make_client(env={"HTTP_PROXY": proxy.url}) as c:
            r = await c.get(server.url(path))
        assert r.content == path.encode()
    line = await proxy.saw(f"GET 127.0.0.1:{server.port}{path}")
    assert " 200 " in line


async def test_https_goes_through_a_connect_tunnel(proxy, ca, ca_pem):
    path = "/" + uuid.uuid4().hex
    env = {"https_proxy": proxy.url, "SSL_CERT_FILE": ca_pem}
    async with tls_server(ca) as server, make_client(env=env) as c:
        for _ in range(2):  # the tunnelled connection is pooled like any other
            assert (await c.get(server.url(path))).content == path.encode()
    await proxy.saw(f"CONNECT 127.0.0.1:{server.port}")
    assert server.accepts == 1


@pytest.mark.parametrize(
    "no_proxy", ["127.0.0.1", "*", "localhost, 127.0.0.1", "example.com,127.0.0.1"]
)
async def test_NO_PROXY_hosts_bypass_the_proxy(no_proxy):
    dead_proxy = f"http://127.0.0.1:{closed_port()}"
    env = {"ALL_PROXY": dead_proxy, "NO_PROXY": no_proxy}
    async with Server(serving()) as server, make_client(env=env) as c:
        assert (await c.get(server.url())).status_code == 200  # never tried the dead proxy


async def test_hosts_not_in_NO_PROXY_do_use_the_proxy():
    dead_proxy = f"http://127.0.0.1:{closed_port()}"
    env = {"ALL_PROXY": dead_proxy, "no_proxy": "example.com,localhost"}
    async with Server(serving()) as server, make_client(env=env) as c:
        with pytest.raises(httpx.ConnectError):
            await c.get(server.url())
    assert server.accepts == 0


async def test_an_explicit_proxy_wins_over_the_environment(proxy):
    path = "/" + uuid.uuid4().hex
    env = {"HTTP_PROXY": f"http://127.0.0.1:{closed_port()}", "NO_PROXY": "*"}
    async with Server(serving()) as server, make_client(env=env, proxy=proxy.url) as c:
        assert (await c.get(server.url(path))).status_code == 200
    await proxy.saw(path)


async def test_proxy_credentials_from_the_proxy_url(auth_proxy, ca, ca_pem):
    path = "/" + uuid.uuid4().hex
    with_auth = auth_proxy.url.replace("http://", "http://ann:s3cret@")
    async with tls_server(ca) as server:
        async with make_client(proxy=with_auth, ca_bundle=ca_pem, env={}) as c:
            assert (await c.get(server.url(path))).content == path.encode()
        async with make_client(proxy=auth_proxy.url, ca_bundle=ca_pem, env={}) as c:
            with pytest.raises(httpx.ProxyError, match="407"):
                await c.get(server.url(path))
    assert server.accepts == 1


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"proxy": "socks5://127.0.0.1:1080"}, "providers[].proxy"),
        ({"env": {"ALL_PROXY": "socks5h://127.0.0.1:1080"}}, "ALL_PROXY"),
        ({"proxy": "http://"}, "providers[].proxy"),
    ],
)
def test_unusable_proxy_urls_are_refused_when_the_client_is_made(kwargs, names):
    with pytest.raises(ValueError, match="proxy") as info:
        make_client(**kwargs)
    assert names in str(info.value) and "\n" not in str(info.value)


async def test_proxy_wire_format_absolute_form_and_credentials():
    """A fake proxy records what the transport sends it: the absolute URL as the target."""
    async with Server(serving()) as fake:
        route = Proxy.from_url(f"http://u%40corp:p%3Ass@127.0.0.1:{fake.port}")
        transport = AsyncioTransport(proxy=lambda url: route)
        async with httpx.AsyncClient(transport=transport) as c:
            r = await c.get("http://api.example.test:8080/v1/models?x=1")
        assert r.status_code == 200
    head = fake.requests[0]
    assert head.startswith(b"GET http://api.example.test:8080/v1/models?x=1 HTTP/1.1\r\n")
    assert b"\r\nhost: api.example.test:8080\r\n" in head.lower()
    assert b"\r\nProxy-Authorization: Basic dUBjb3JwOnA6c3M=\r\n" in head  # u@corp:p:ss


@pytest.mark.parametrize(
    "answer", [b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", b"nonsense\r\n\r\n", b""]
)
async def test_a_refused_or_broken_connect_is_a_proxy_error(answer):
    async def handler(server, reader, writer, index):
        await server.read_request(reader)
        writer.write(answer)
        await writer.drain()

    async with Server(handler) as fake:
        route = Proxy.from_url(f"http://127.0.0.1:{fake.port}")
        transport = AsyncioTransport(proxy=lambda url: route)
        async with httpx.AsyncClient(transport=transport) as c:
            with pytest.raises(httpx.ProxyError, match=r"api\.example\.test:443"):
                await c.get("https://api.example.test/")
    assert fake.requests[0].startswith(b"CONNECT api.example.test:443 HTTP/1.1\r\n")
    assert transport.open_connections == 0


PROXY_URLS = ["", "http://p:3128", "p2:8080", "http://u:pw@p3", "http://127.0.0.1:9"]
NO_PROXY_VALUES = ["", "127.0.0.1", "*", "localhost,::1", ".corp.example, example.org",
                   "192.168.1.1,http://x.test", "api.openai.com", "x.test,*"]  # fmt: skip
URLS = ["http://127.0.0.1:8000/", "https://api.openai.com/v1", "http://localhost:11434/",
        "https://x.corp.example/", "http://corp.example/", "https://example.org:8443/",
        "http://[::1]:80/", "http://wwwexample.org/", "http://x.test/"]  # fmt: skip
ENVIRONMENTS = st.tuples(
    st.dictionaries(
        st.sampled_from(
            ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
        ),
        st.sampled_from(PROXY_URLS),
        max_size=4,
    ),
    st.dictionaries(st.sampled_from(["NO_PROXY", "no_proxy"]), st.sampled_from(NO_PROXY_VALUES)),
    st.dictionaries(st.just("REQUEST_METHOD"), st.just("GET")),
).map(lambda parts: {k: v for part in parts for k, v in part.items()})


@settings(max_examples=60, deadline=None)
@given(ENVIRONMENTS)
def test_proxy_choice_matches_httpx_trust_env(env):
    """The same mounts as httpx's get_environment_proxies and the same proxy per URL as an
    ``httpx.Client(trust_env=True)``, from a mapping instead of os.environ."""
    with mock.patch.dict(os.environ, env, clear=True):
        expected = httpx._utils.get_environment_proxies()
        stock = httpx.Client(trust_env=True)
    try:
        assert proxy_mounts(env) == expected
        route = proxy_router(None, env)
        for url in URLS:
            transport = stock._transport_for_url(httpx.URL(url))
            pool = getattr(transport, "_pool", None)
            want = getattr(pool, "_proxy_url", None)
            got = route(httpx.URL(url)) if route else None
            if want is None:
                assert got is None, url
            else:
                assert got is not None, url
                assert (got.host, got.port) == (want.host.decode(), want.port or 80), url
    finally:
        stock.close()


# --- certificates and TLS errors --------------------------------------------------------------


@pytest.mark.parametrize("source", ["ca_bundle", "SSL_CERT_FILE", "os.environ SSL_CERT_FILE"])
async def test_a_custom_ca_is_trusted(ca, ca_pem, source, monkeypatch):
    if source == "ca_bundle":
        c = make_client(env={}, ca_bundle=ca_pem)
    elif source == "SSL_CERT_FILE":
        c = make_client(env={"SSL_CERT_FILE": ca_pem})
    else:
        monkeypatch.setenv("SSL_CERT_FILE", ca_pem)
        c = make_client()
    async with tls_server(ca) as server, c:
        assert (await c.get(server.url("/x"))).content == b"/x"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_a_custom_ca_directory_from_SSL_CERT_DIR_is_trusted(ca, ca_pem, tmp_path):
    subprocess.run(["cp", ca_pem, str(tmp_path)], check=True)
    subprocess.run(["openssl", "rehash", str(tmp_path)], check=True, capture_output=True)
    async with tls_server(ca) as server, make_client(env={"SSL_CERT_DIR": str(tmp_path)}) as c:
        assert (await c.get(server.url("/d"))).content == b"/d"


async def test_an_unknown_ca_is_refused_with_a_message_naming_the_fixes(ca):
    async with tls_server(ca) as server, make_client(env={}) as c:
        with pytest.raises(TLSError) as info:
            await c.get(server.url())
    message = str(info.value)
    assert isinstance(info.value, httpx.ConnectError)
    assert f"127.0.0.1:{server.port}" in message and "not trust" in message
    for fix in ("SSL_CERT_FILE", "SSL_CERT_DIR", "providers[].ca_bundle", "OS trust store"):
        assert fix in message
    assert "\n" not in message


async def test_an_unknown_ca_behind_a_connect_tunnel_names_the_server(proxy, ca):
    async with tls_server(ca) as server, make_client(env={}, proxy=proxy.url) as c:
        with pytest.raises(TLSError, match=f"127.0.0.1:{server.port}.*not trust"):
            await c.get(server.url())


async def test_a_certificate_for_another_name_is_refused(ca, ca_pem):
    async with tls_server(ca, "localhost") as server, make_client(env={}, ca_bundle=ca_pem) as c:
        with pytest.raises(TLSError) as info:
            await c.get(server.url())
    message = str(info.value)
    assert "not valid for 127.0.0.1" in message and "providers[].base_url" in message
    assert "\n" not in message


async def test_an_expired_certificate_is_refused(ca, ca_pem):
    past = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    server = tls_server(ca, not_before=past, not_after=past + datetime.timedelta(days=1))
    async with server, make_client(env={}, ca_bundle=ca_pem) as c:
        with pytest.raises(TLSError, match=r"expired or not yet valid.*clock"):
            await c.get(server.url())


async def test_https_to_a_plain_http_server_says_so():
    async def plain_http(server, reader, writer, index):
        await reader.read(1)  # a ClientHello is no HTTP request: 400, as a real server says
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    async with Server(plain_http) as server, make_client(env={}) as c:
        with pytest.raises(TLSError, match=r"is it an https server.*providers\[\]\.base_url"):
            await c.get(f"https://127.0.0.1:{server.port}/")


async def test_a_reset_during_the_handshake_stays_a_transient_connect_error():
    async def reset(server, reader, writer, index):
        await reader.read(1)  # the ClientHello
        writer.transport.abort()

    async with Server(reset) as server, make_client(env={}) as c:
        with pytest.raises(httpx.ConnectError) as info:
            await c.get(f"https://127.0.0.1:{server.port}/")
    assert not isinstance(info.value, TLSError)


@pytest.mark.parametrize("source", ["ca_bundle", "SSL_CERT_FILE", "SSL_CERT_DIR", "not PEM"])
async def test_unloadable_ca_settings_fail_the_first_https_connection_clearly(ca, tmp_path, source):
    missing = str(tmp_path / "missing.pem")
    kwargs: dict = {"env": {}}
    if source == "ca_bundle":
        kwargs["ca_bundle"] = missing
    elif source == "not PEM":
        garbage = tmp_path / "garbage.pem"
        garbage.write_text("not a certificate")
        kwargs["ca_bundle"], missing = str(garbage), str(garbage)
    else:
        kwargs["env"] = {source: missing}
    c = make_client(**kwargs)  # lazy: nothing is loaded yet
    async with Server(serving()) as plain, tls_server(ca) as server, c:
        assert (await c.get(plain.url())).status_code == 200  # http never loads CAs
        assert c._transport._ssl_context is None
        for _ in range(2):  # not cached as a success
            with pytest.raises(TLSError) as info:
                await c.get(server.url())
            key = "providers[].ca_bundle" if source == "not PEM" else source
            assert key in str(info.value) and missing in str(info.value)
    assert server.accepts == 0


async def test_verify_false_is_explicit_and_accepts_any_certificate(ca):
    async with tls_server(ca) as server, make_client(env={}, verify=False) as c:
        assert (await c.get(server.url("/v"))).content == b"/v"


def test_no_environment_variable_turns_verification_off():
    env = {"PYTHONHTTPSVERIFY": "0", "SSL_CERT_FILE": "", "CURL_CA_BUNDLE": ""}
    context = make_client(env=env)._transport.ssl_context
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


async def test_one_client_per_network_setting_and_one_tls_context_per_ca_bundle(ca_pem):
    configs = [
        ProviderConfig("a", "openai", "m"),
        ProviderConfig("b", "anthropic", "m", headers=(("x-title", "${TITLE}"),)),
        ProviderConfig("c", "openai", "m", ca_bundle=ca_pem),
        ProviderConfig("d", "openai", "m", proxy="http://127.0.0.1:9"),
        ProviderConfig("e", "openai", "m", verify=False),
    ]
    clients = ClientSet(env={})
    a, b, c, d, e = (clients.for_config(config) for config in configs)
    try:
        assert a is b  # headers are sent by the adapter, per request
        assert len({id(a), id(c), id(d), id(e)}) == 4
        assert "x-title" not in a.headers
        assert a._transport.ssl_context is d._transport.ssl_context
        assert a._transport.ssl_context is not c._transport.ssl_context
        assert e._transport.ssl_context.verify_mode == ssl.CERT_NONE
    finally:
        await clients.aclose()
    assert a.is_closed and c.is_closed and d.is_closed and e.is_closed


# --- Happy Eyeballs ---------------------------------------------------------------------------


async def test_an_address_that_drops_connections_costs_the_stagger_not_the_timeout(monkeypatch):
    """The name resolves to 127.0.0.2 first, where a full accept queue drops every SYN, then
    to 127.0.0.1, which answers: the second attempt starts after the Happy Eyeballs delay."""
    connect_timeout = 3.0
    async with Server(serving()) as server:
        with dropping_address(server.port):
            loop = asyncio.get_running_loop()

            async def resolve(host, port, *args, **kwargs):
                assert host == "dualhomed.test"
                return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))
                        for ip in ("127.0.0.2", "127.0.0.1")]  # fmt: skip

            monkeypatch.setattr(loop, "getaddrinfo", resolve)
            timeout = httpx.Timeout(GUARD, connect=connect_timeout)
            async with make_client(env={}) as c:
                start = loop.time()
                r = await c.get(f"http://dualhomed.test:{server.port}/", timeout=timeout)
                took = loop.time() - start
    assert r.status_code == 200
    assert took < connect_timeout / 2  # ~0.25 s; trying the addresses in turn would time out


# --- what a plain chain does not pay for ------------------------------------------------------


def test_plain_and_http_proxied_chains_load_no_httpcore_anyio_or_certificates():
    script = textwrap.dedent(
        """
        import asyncio, sys
        from failover_cli.providers._client import make_client

        async def answer(reader, writer):
            await reader.readuntil(b"\\r\\n\\r\\n")
            writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")
            await writer.drain()
            writer.close()

        async def main():
            server = await asyncio.start_server(answer, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            env = {"SSL_CERT_FILE": "/nonexistent.pem", "NO_PROXY": "127.0.0.1",
                   "HTTPS_PROXY": "http://127.0.0.1:9"}
            async with make_client(env=env, ca_bundle="/nonexistent.pem") as client:
                direct = await client.get(f"http://127.0.0.1:{port}/")
            proxied = make_client(proxy=f"http://127.0.0.1:{port}")
            async with proxied:
                via = await proxied.get("http://api.example.test/")
            server.close()
            assert direct.text == via.text == "ok"

        asyncio.run(main())
        heavy = ("anyio", "httpcore", "sniffio", "certifi", "truststore")
        loaded = [m for m in heavy if m in sys.modules]
        assert not loaded, loaded
        print("clean")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "clean"


async def test_make_client_defaults():
    c = make_client(env={}, headers=(("HTTP-Referer", "https://example.org"),))
    try:
        assert isinstance(c._transport, AsyncioTransport) and not c._mounts
        assert c.trust_env is False and c.follow_redirects is False
        assert c.headers["http-referer"] == "https://example.org"
        assert c.headers["user-agent"].startswith("failover/")
        assert c.timeout.connect == 5.0
    finally:
        await c.aclose()


# --- through the router: a refused certificate is a provider-class failure ---------------------


async def test_an_untrusted_provider_fails_over_as_provider_class_and_a_ca_bundle_fixes_it(
    ca, ca_pem
):
    from failover_cli.errors import AllProvidersFailed
    from failover_cli.router import FailoverRouter
    from failover_cli.sim import Behavior, Simulator
    from failover_cli.types import ErrorClass, ProviderConfig

    async with tls_server(ca) as server:
        with Simulator("ollama", Behavior(text="from the fallback")) as fallback:
            configs = [
                ProviderConfig(name="corp", kind="ollama", model="m", base_url=server.url()),
                ProviderConfig(name="local", kind="ollama", model="m", base_url=fallback.base_url),
            ]
            async with FailoverRouter(configs, env={}, background_probes=False) as router:
                result = await router.route(prompt="hi", max_tokens=5)
            assert result.provider == "local"
            failed = result.attempts[0]
            assert (failed.provider, failed.error_class) == ("corp", ErrorClass.PROVIDER)
            assert "SSL_CERT_FILE" in failed.message and "ca_bundle" in failed.message
            assert len([a for a in result.attempts if a.provider == "corp"]) == 1  # no retries

            fixed = [ProviderConfig(name="corp", kind="ollama", model="m",
                                    base_url=server.url(), ca_bundle=ca_pem)]  # fmt: skip
            async with FailoverRouter(fixed, env={}, background_probes=False) as router:
                with pytest.raises(AllProvidersFailed) as info:  # the TLS server is no Ollama
                    await router.route(prompt="hi", max_tokens=5, max_wait=0)
            assert "invalid JSON" in str(info.value)  # it got past TLS: the CA was trusted
