"""bench/peers_servers.py: every server name has its row, and a peer's environment follows its pins."""

from __future__ import annotations

from bench.peers_servers import DEFAULT_SERVERS, PEERS, SERVER_NAMES, SPECS, venv_dir


def test_every_server_has_a_spec_and_the_peers_are_servers():
    assert set(SPECS) == set(SERVER_NAMES) and set(PEERS) <= set(DEFAULT_SERVERS) <= set(SERVER_NAMES)
    assert all(SPECS[name].requirements is not None for name in PEERS)
    assert all(SPECS[name].requirements.is_file() for name in PEERS)


def test_a_pin_change_makes_another_venv_folder(tmp_path):
    requirements = tmp_path / "requirements-kserve.txt"
    requirements.write_text("kserve==0.21.0\n")
    first = venv_dir(requirements, tmp_path / "cache")
    requirements.write_text("kserve==0.20.0\n")
    second = venv_dir(requirements, tmp_path / "cache")
    assert first.name.startswith("kserve-") and first != second and first.parent == tmp_path / "cache"
