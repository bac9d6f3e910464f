"""The validated-configuration cache and the user directories: an unchanged file is served
from the cache without PyYAML, any change in content is parsed again, a damaged entry is
ignored, invalid files are never cached, a planted or untrusted entry is never used, and the
XDG paths agree with platformdirs."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
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
    assert all(stat.S_IMODE(e.stat().st_mode) == 0o600 for e in [*entries, cache / "secret"])
    assert stat.S_IMODE((cache / "config").stat().st_mode) == 0o700
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert len((cache / "secret").read_bytes()) == 32


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


# --- a hostile cache: planted, foreign or loosely protected entries are never used ---------------

ATTACKER = "http://127.0.0.1:9"  # where a planted entry would send the API key


def planted_value(path: Path) -> dict:
    """The configuration of ``path`` as an attacker would store it: the first provider's
    base_url pointing at their port."""
    value = dataclasses.asdict(parse_config(path.read_text(), str(path)))
    value["providers"][0]["base_url"] = ATTACKER
    return value


def public_key(path: Path) -> str:
    """The entry key for ``path``: computable by anyone who can read the file and failover."""
    return config_cache.key(path.read_bytes(), config_module._fingerprint())


@pytest.mark.parametrize("mac", [None, b"0" * 64, b"guess"], ids=["no mac", "zero mac", "guess"])
def test_a_planted_entry_never_changes_the_configuration(tmp_path, spy, mac):
    path = tmp_path / "providers.yaml"
    path.write_text(FULL)
    cache = tmp_path / "cache"
    load_config(path, cache_dir=cache)  # the victim's cache exists, with its secret
    entry = config_cache.entry_path(cache, path)
    payload = json.dumps({"key": public_key(path), "value": planted_value(path)}).encode()
    entry.write_bytes(payload if mac is None else mac + b"\n" + payload)
    entry.chmod(0o600)
    loaded = load_config(path, cache_dir=cache)
    assert loaded.providers[0].base_url == "https://api.anthropic.com"
    assert loaded == parse_config(FULL, str(path))
    assert len(spy) == 2  # the planted entry was ignored and the YAML parsed again
    assert ATTACKER.encode() not in entry.read_bytes()  # and replaced by a genuine entry
    load_config(path, cache_dir=cache)
    assert len(spy) == 2


def test_an_entry_from_another_users_cache_is_not_used(tmp_path, spy):
    """Entries copied from elsewhere (another secret) are rejected, and so is everything in
    a cache whose secret was replaced."""
    path = tmp_path / "providers.yaml"
    path.write_text(FULL)
    theirs, mine = tmp_path / "theirs", tmp_path / "mine"
    load_config(path, cache_dir=theirs)
    load_config(path, cache_dir=mine)
    assert len(spy) == 2
    shutil.copyfile(config_cache.entry_path(theirs, path), config_cache.entry_path(mine, path))
    assert load_config(path, cache_dir=mine) == parse_config(FULL, str(path))
    assert len(spy) == 3


def loosen(target: Path, how: str) -> None:
    if how == "group-writable":
        target.chmod(stat.S_IMODE(target.stat().st_mode) | 0o020)
    elif how == "other-writable":
        target.chmod(stat.S_IMODE(target.stat().st_mode) | 0o002)
    else:  # another owner
        os.chown(target, 4242, -1, follow_symlinks=False)


HOW = [
    "group-writable",
    "other-writable",
    pytest.param(
        "another owner",
        marks=pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file away"),
    ),
]


@pytest.mark.parametrize("how", HOW)
def test_an_entry_anyone_else_could_have_written_is_not_used(tmp_path, spy, how):
    path = tmp_path / "providers.yaml"
    path.write_text(FULL)
    cache = tmp_path / "cache"
    load_config(path, cache_dir=cache)
    entry = config_cache.entry_path(cache, path)
    loosen(entry, how)  # the entry itself is genuine: only its owner or mode is wrong
    load_config(path, cache_dir=cache)
    assert len(spy) == 2
    load_config(path, cache_dir=cache)  # rewritten as this user's private file: used again
    assert len(spy) == 2
    assert entry.stat().st_uid == os.geteuid()
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600


@pytest.mark.parametrize("which", ["config", "."])
@pytest.mark.parametrize("how", HOW)
def test_a_cache_directory_anyone_else_could_write_is_not_used(tmp_path, spy, how, which):
    path = tmp_path / "providers.yaml"
    path.write_text(FULL)
    cache = tmp_path / "cache"
    load_config(path, cache_dir=cache)
    entry = config_cache.entry_path(cache, path)
    before = entry.read_bytes()
    loosen(cache / which, how)
    for _ in range(2):
        assert load_config(path, cache_dir=cache) == parse_config(FULL, str(path))
    assert len(spy) == 3  # never read from it
    assert entry.read_bytes() == before  # nor written to it


@pytest.mark.parametrize("how", [*HOW, "readable", "a symbolic link"])
def test_a_secret_anyone_else_could_know_disables_the_cache(tmp_path, spy, how):
    path = tmp_path / "providers.yaml"
    path.write_text(FULL)
    cache = tmp_path / "cache"
    load_config(path, cache_dir=cache)
    secret = cache / "secret"
    if how == "readable":
        secret.chmod(0o644)
    elif how == "a symbolic link":
        elsewhere = tmp_path / "known"
        elsewhere.write_bytes(secret.read_bytes())
        secret.unlink()
        secret.symlink_to(elsewhere)
    else:
        loosen(secret, how)
    for _ in range(2):
        assert load_config(path, cache_dir=cache) == parse_config(FULL, str(path))
    assert len(spy) == 3


def test_a_symbolic_link_in_place_of_an_entry_is_not_followed(tmp_path, spy):
    path = tmp_path / "providers.yaml"
    path.write_text(FULL)
    other = tmp_path / "other.yaml"
    other.write_text(FULL)
    cache = tmp_path / "cache"
    load_config(path, cache_dir=cache)
    load_config(other, cache_dir=cache)
    entry = config_cache.entry_path(cache, path)
    entry.unlink()
    entry.symlink_to(config_cache.entry_path(cache, other))
    load_config(path, cache_dir=cache)
    assert len(spy) == 3
    assert entry.is_symlink()  # neither followed nor replaced


def test_an_entry_made_by_other_validation_code_is_not_used(tmp_path):
    """The key covers the source of the validating modules: the same file and version under
    a changed config.py (here: a copy of the package with one comment added) never match."""
    package = Path(config_module.__file__).parent
    changed = tmp_path / "changed" / "failover_cli"
    shutil.copytree(package, changed, ignore=shutil.ignore_patterns("__pycache__"))
    with open(changed / "config.py", "a", encoding="utf-8") as f:
        f.write("# a change in validation\n")
    probe = "from failover_cli import config_cache; print(config_cache.code_digest())"

    def digest(root: Path) -> str:
        env = {**os.environ, "PYTHONPATH": str(root)}
        return subprocess.run(
            [sys.executable, "-c", probe],
            capture_output=True, text=True, check=True, env=env, cwd=root,
        ).stdout.strip()  # fmt: skip

    assert digest(package.parent) == config_cache.code_digest()
    assert digest(changed.parent) != config_cache.code_digest()
    assert config_cache.key(b"x", "f") != config_cache.key(b"y", "f")


# --- the user directories ---------------------------------------------------------------------


@pytest.mark.skipif(sys.platform.startswith(("win", "darwin")), reason="XDG platforms only")
@pytest.mark.parametrize("xdg", [None, "", "   ", "/custom/place"])
@pytest.mark.parametrize("kind", ["config", "state", "cache", "data"])
def test_user_directories_agree_with_platformdirs(monkeypatch, tmp_path, kind, xdg):
    monkeypatch.setenv("HOME", str(tmp_path))
    var = {
        "config": "XDG_CONFIG_HOME", "state": "XDG_STATE_HOME", "cache": "XDG_CACHE_HOME",
        "data": "XDG_DATA_HOME",
    }[kind]  # fmt: skip
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


@pytest.mark.skipif(sys.platform.startswith(("win", "darwin")), reason="XDG platforms only")
@pytest.mark.parametrize("xdg", [".cache", "relative/dir", "~/not-expanded"])
@pytest.mark.parametrize("kind", ["config", "state", "cache"])
def test_a_relative_xdg_directory_is_ignored(monkeypatch, tmp_path, kind, xdg):
    """The XDG spec: a relative path is invalid. Honouring it would put the cache (and its
    secret) wherever the command runs, e.g. inside a cloned repository."""
    monkeypatch.setenv("HOME", str(tmp_path))
    var = {"config": "XDG_CONFIG_HOME", "state": "XDG_STATE_HOME", "cache": "XDG_CACHE_HOME"}[kind]
    monkeypatch.setenv(var, xdg)
    default = {"config": ".config", "state": ".local/state", "cache": ".cache"}[kind]
    assert getattr(paths, f"{kind}_dir")() == tmp_path / default / "failover"
