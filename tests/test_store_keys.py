"""plexhpc.storage.keys: the signing key file."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from plexhpc.errors import StateError
from plexhpc.storage import keys
from plexhpc.storage.keys import KEY_FILE_ENV, KEY_LEN, load_or_create_key


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(autouse=True)
def no_env_key(monkeypatch):
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)


def test_creates_a_private_key_once(tmp_path):
    path = tmp_path / "conf" / "plexhpc" / "state.key"
    key = load_or_create_key(str(path))
    assert len(key) == KEY_LEN == 32
    assert path.read_bytes() == key
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert load_or_create_key(str(path)) == key  # read back, not recreated
    assert [p.name for p in path.parent.iterdir()] == ["state.key"]  # no temp file left


def test_two_keys_differ(tmp_path):
    assert load_or_create_key(str(tmp_path / "a")) != load_or_create_key(str(tmp_path / "b"))


def test_env_var_names_the_file(tmp_path, monkeypatch):
    path = tmp_path / "from-env.key"
    monkeypatch.setenv(KEY_FILE_ENV, str(path))
    key = load_or_create_key()
    assert path.read_bytes() == key


def test_default_is_under_the_home_config(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    key = load_or_create_key()
    assert (tmp_path / ".config" / "plexhpc" / "state.key").read_bytes() == key


def test_explicit_path_wins_over_env(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "env.key"))
    load_or_create_key(str(tmp_path / "explicit.key"))
    assert (tmp_path / "explicit.key").exists() and not (tmp_path / "env.key").exists()


@pytest.mark.parametrize("where", ["state.key", "sub/dir/state.key", "."])
def test_a_key_inside_the_state_dir_is_refused(tmp_path, where):
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    with pytest.raises(StateError, match="inside the state directory"):
        load_or_create_key(str(state_dir / where), state_dir=str(state_dir))
    assert not (state_dir / "state.key").exists()


def test_a_key_inside_the_state_dir_through_a_symlink_is_refused(tmp_path):
    real = tmp_path / "real-state"
    real.mkdir()
    link = tmp_path / "state-link"
    link.symlink_to(real)
    with pytest.raises(StateError, match="inside the state directory"):
        load_or_create_key(str(real / "k"), state_dir=str(link))
    with pytest.raises(StateError, match="inside the state directory"):
        load_or_create_key(str(link / "k"), state_dir=str(real))


def test_a_key_inside_the_state_dir_via_env_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "state" / "k"))
    with pytest.raises(StateError, match=KEY_FILE_ENV):
        load_or_create_key(state_dir=str(tmp_path / "state"))


def test_a_sibling_with_a_longer_name_is_outside(tmp_path):
    key = load_or_create_key(str(tmp_path / "state2" / "k"), state_dir=str(tmp_path / "state"))
    assert len(key) == 32


@pytest.mark.parametrize("content", [b"", b"x" * 31, b"x" * 33, b"x" * 1000])
def test_a_key_file_of_the_wrong_length_is_refused(tmp_path, content):
    path = tmp_path / "state.key"
    path.write_bytes(content)
    with pytest.raises(StateError, match=f"holds {len(content)}.*exactly 32"):
        load_or_create_key(str(path))
    assert path.read_bytes() == content  # never overwritten


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(StateError, match="is a directory"):
        load_or_create_key(str(tmp_path))


def test_an_unwritable_place_is_a_state_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StateError, match="cannot create"):
        load_or_create_key(str(blocker / "sub" / "state.key"))


def test_threads_racing_to_create_get_the_same_key(tmp_path):
    for round_ in range(5):
        path = str(tmp_path / f"race{round_}" / "state.key")
        barrier = threading.Barrier(8)
        got = []

        def create():
            barrier.wait()
            got.append(load_or_create_key(path))

        threads = [threading.Thread(target=create) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(got) == 8 and len(set(got)) == 1
        with open(path, "rb") as f:
            assert f.read() == got[0]


def test_losing_the_race_returns_the_winners_key(tmp_path, monkeypatch):
    """Another process creates the file between our check and our link: we keep its key."""
    path = tmp_path / "state.key"
    winner = os.urandom(32)
    real_link = os.link

    def link_after_the_winner(src, dst):
        with open(dst, "wb") as f:
            f.write(winner)
        return real_link(src, dst)

    monkeypatch.setattr(keys.os, "link", link_after_the_winner)
    assert load_or_create_key(str(path)) == winner
    assert [p.name for p in tmp_path.iterdir()] == ["state.key"]


def test_filesystems_without_hard_links_still_create_exclusively(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(keys.os, "link", no_links)
    path = tmp_path / "state.key"
    key = load_or_create_key(str(path))
    assert path.read_bytes() == key and mode(path) == 0o600
    assert load_or_create_key(str(path)) == key
    assert [p.name for p in tmp_path.iterdir()] == ["state.key"]
