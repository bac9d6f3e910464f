"""The validated-configuration cache and the user directories: an unchanged file is served
from the cache without PyYAML, any change in content is parsed again, a damaged entry is
ignored, invalid files are never cached, and the XDG paths agree with platformdirs."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import platformdirs
import pytest
from test_config import FULL

import failover_cli.config as config_module
from failover_cli import config_cache, paths
from failover_cli.config import load_config, parse_config
from failover_cli.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parent.parent / "providers.example.yaml"


@pytest.fixture
def spy(monkeypatch):
    """Counts parse_config calls made by load_config."""
    calls: list[str] = []
    real = config_module.parse_config

    def counting(text: str, file: str = "<string>"):
        calls.append(file)
        return real(text, file)

    monkeypatch.setattr(config_module, "parse_config", counting)
    return calls


@pytest.mark.parametrize("text", [FULL, EXAMPLE.read_text()], ids=["full", "example"])
def test_a_cached_configuration_equals_the_parsed_one(tmp_path, spy, text):
    path = tmp_path / "providers.yaml"
    path.write_text(text)
    first = load_config(path, cache_dir=tmp_path / "cache")
    second = load_config(path, cache_dir=tmp_path / "cache")
    assert len(spy) == 1  # the second came from the cache
    assert second == first == parse_config(text, str(path))


def test_the_cache_entry_is_private_and_one_per_path(tmp_path):
    cache = tmp_path / "cache"
    for name in ("a", "b"):
        path = tmp_path / f"{name}.yaml"
        path.write_text(FULL)
        load_config(path, cache_dir=cache)
        load_config(path, cache_dir=cache)
    entries = sorted((cache / "config").iterdir())
    assert len(entries) == 2
    assert all(stat.S_IMODE(e.stat().st_mode) == 0o600 for e in entries)


def test_any_change_in_content_is_parsed_again_even_with_the_same_size_and_time(tmp_path, spy):
    path = tmp_path / "providers.yaml"
    path.write_text(FULL)
    before = path.stat()
    load_config(path, cache_dir=tmp_path)
    changed = FULL.replace("attempts: 4", "attempts: 5")
    assert len(changed) == len(FULL)
    path.write_text(changed)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert load_config(path, cache_dir=tmp_path).retry.attempts == 5
    assert len(spy) == 2


def test_the_source_is_the_path_it_was_loaded_from_not_the_cached_one(tmp_path, monkeypatch, spy):
    path = tmp_path / "providers.yaml"
    path.write_text(FULL)
    load_config(path, cache_dir=tmp_path / "cache")
    monkeypatch.chdir(tmp_path)
    assert load_config("providers.yaml", cache_dir=tmp_path / "cache").source == "providers.yaml"
    assert len(spy) == 1  # the same file by another name: the same entry


def test_an_entry_made_under_other_defaults_is_not_used(tmp_path, spy, monkeypatch):
    path = tmp_path / "providers.yaml"
    path.write_text(FULL)
    load_config(path, cache_dir=tmp_path)
    monkeypatch.setattr(config_module, "_fingerprint", lambda: "another version")
    load_config(path, cache_dir=tmp_path)
    assert len(spy) == 2


@pytest.mark.parametrize(
    "damage",
    [b"", b"{not json", b'{"key": 1}', b"[]", None],
    ids=["empty", "garbage", "wrong key", "wrong shape", "wrong values"],
)
def test_a_damaged_entry_is_ignored_and_rewritten(tmp_path, spy, damage):
    path = tmp_path / "providers.yaml"
    path.write_text(FULL)
    expected = load_config(path, cache_dir=tmp_path)
    entry = config_cache.entry_path(tmp_path, path)
    if damage is None:  # the right key, but a value that does not decode
        text = entry.read_text().replace('"attempts": 4', '"attempts": "four"')
        assert text != entry.read_text()
        damage = text.encode()
    entry.write_bytes(damage)
    assert load_config(path, cache_dir=tmp_path) == expected
    assert load_config(path, cache_dir=tmp_path) == expected
    assert len(spy) == 2  # parsed again once, then cached again


def test_an_invalid_file_is_never_cached_and_reports_its_lines(tmp_path):
    path = tmp_path / "providers.yaml"
    path.write_text("providers:\n  - {name: a, kind: nope, model: m}\n")
    for _ in range(2):
        with pytest.raises(ConfigError, match=r"providers\.yaml:2"):
            load_config(path, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "config").exists()


def test_an_unwritable_cache_directory_is_harmless(tmp_path):
    path = tmp_path / "providers.yaml"
    path.write_text(FULL)
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the directory should be")
    assert load_config(path, cache_dir=blocker) == parse_config(FULL, str(path))


def test_a_cached_run_does_not_import_yaml(tmp_path):
    path = tmp_path / "providers.yaml"
    path.write_text(FULL)
    probe = (
        "import sys; from pathlib import Path; from failover_cli.config import load_config; "
        f"load_config({str(path)!r}, cache_dir=Path({str(tmp_path)!r})); "
        "print('yaml' in sys.modules)"
    )

    def run() -> str:
        return subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True
        ).stdout.strip()

    assert run() == "True"  # the first load parses
    assert run() == "False"


def test_decode_rejects_values_of_the_wrong_type():
    from failover_cli.config import QueueConfig, RoutingConfig

    assert config_cache.decode(QueueConfig, {"max_wait": 5, "max_size": 3}) == QueueConfig(5.0, 3)
    with pytest.raises(TypeError):
        config_cache.decode(QueueConfig, {"max_wait": "5"})
    with pytest.raises(ValueError):
        config_cache.decode(RoutingConfig, {"strategy": "fastest"})


# --- the user directories ---------------------------------------------------------------------


@pytest.mark.skipif(sys.platform.startswith(("win", "darwin")), reason="XDG platforms only")
@pytest.mark.parametrize("xdg", [None, "", "   ", "/custom/place"])
@pytest.mark.parametrize("kind", ["config", "state", "cache"])
def test_user_directories_agree_with_platformdirs(monkeypatch, tmp_path, kind, xdg):
    monkeypatch.setenv("HOME", str(tmp_path))
    var = {"config": "XDG_CONFIG_HOME", "state": "XDG_STATE_HOME", "cache": "XDG_CACHE_HOME"}[kind]
    if xdg is None:
        monkeypatch.delenv(var, raising=False)
    else:
        monkeypatch.setenv(var, xdg)
    ours = getattr(paths, f"{kind}_dir")()
    assert ours == getattr(platformdirs, f"user_{kind}_path")("failover")
    if xdg and xdg.strip():
        assert ours == Path(xdg) / "failover"
    else:
        assert str(ours).startswith(str(tmp_path))
