"""`pcnet init` keeps secrets private: the data directory 0700, the configuration, database and
TLS keys 0600 (whatever the umask), and a database password neither printed nor shown in any
error message; database URLs in messages never carry their password."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

from pcnet import config
from pcnet.errors import ConfigError
from pcnet.store import describe_address, password_of, redact_url
from tests.cli.test_admin_commands import BIN
from tests.support.db import postgres_database, postgres_url, skip_unless_postgres_enabled

PASSWORD = "Pg-S3cret-XYZZY"


def pcnet(*args):
    return subprocess.run([str(BIN / "pcnet"), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"},
                          preexec_fn=lambda: os.umask(0o022))


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_init_makes_the_data_directory_and_every_secret_file_private(tmp_path):
    d = tmp_path / "data"
    result = pcnet("init", "--data-dir", str(d), "--host", "localhost")
    assert result.returncode == 0, result.stderr
    assert mode(d) == 0o700 and mode(d / "tls") == 0o700
    assert mode(d / "pcnet.toml") == 0o600
    for name in os.listdir(d):
        if name.startswith("pcnet.db"):
            assert mode(d / name) == 0o600, name
    assert mode(d / "tls" / "server.key") == 0o600 and mode(d / "tls" / "ca.key") == 0o600
    assert mode(d / "tls" / "ca.pem") == 0o644  # the CA certificate is copied to every node


def test_init_with_a_database_password_neither_prints_it_nor_leaves_it_readable(tmp_path):
    skip_unless_postgres_enabled()
    d = tmp_path / "data"
    with postgres_database() as dsn:
        url = postgres_url(dsn, password=PASSWORD)
        result = pcnet("init", "--data-dir", str(d), "--host", "localhost", "--database", url)
        assert result.returncode == 0, result.stderr
        assert PASSWORD not in result.stdout + result.stderr
        assert redact_url(url) in result.stdout and ":***@" in result.stdout
        assert "PGPASSFILE" in result.stdout
        assert mode(d / "pcnet.toml") == 0o600 and PASSWORD in (d / "pcnet.toml").read_text()
        token = pcnet("token", "create", "--config", str(d / "pcnet.toml"), "t1")
        assert token.returncode == 0, token.stderr

        # A start-up failure names the server, not the password.
        text = (d / "pcnet.toml").read_text().replace(":5432/", ":1/")
        (d / "pcnet.toml").write_text(text)
        failed = pcnet("token", "create", "--config", str(d / "pcnet.toml"), "t2")
        assert failed.returncode == 1 and "127.0.0.1:1/" in failed.stderr
        assert PASSWORD not in failed.stdout + failed.stderr


@pytest.mark.parametrize("url", [
    f"mysql://root:{PASSWORD}@db/pcnet",
    f"postgresql://pcnet:{PASSWORD}@db/pcnet",
])
def test_a_configuration_error_never_shows_the_database_password(tmp_path, url):
    if url.startswith("mysql"):  # a value the check refuses
        path = tmp_path / "pcnet.toml"
        path.write_text(f'[database]\nurl = "{url}"\n')
        with pytest.raises(ConfigError) as e:
            config.load(path)
        assert "[database] url: 'mysql://root:***@db/pcnet' must start with" in e.value.message
    wrong_type = tmp_path / "wrong.toml"
    wrong_type.write_text(f'[database]\nurl = ["{url}"]\n')
    with pytest.raises(ConfigError) as e:
        config.load(wrong_type)
    assert "[database] url: expected str" in e.value.message and PASSWORD not in e.value.message


@pytest.mark.parametrize("url, shown", [
    ("postgresql://pcnet:pw@db:5433/pcnet", "postgresql://pcnet:***@db:5433/pcnet"),
    ("postgresql://pcnet:p%40ss@db/pcnet?sslmode=require&password=pw2",
     "postgresql://pcnet:***@db/pcnet?sslmode=require&password=***"),
    ("postgresql://pcnet:pa/ss@db/pcnet", "postgresql://pcnet:***@db/pcnet"),
    ("postgres://pcnet@db/pcnet", "postgres://pcnet@db/pcnet"),
    ("host=db password='a b' dbname=pcnet", "host=db password=*** dbname=pcnet"),
    ("sqlite:///var/lib/pcnet/pcnet.db", "sqlite:///var/lib/pcnet/pcnet.db"),
])
def test_database_urls_are_shown_without_their_password(url, shown):
    assert redact_url(url) == shown


def test_error_texts_lose_the_password_and_addresses_are_host_port_dbname():
    from pcnet.store._address import scrub

    assert password_of("postgresql://u:p%40ss@h/db") == "p@ss"
    assert password_of("postgresql://u@h/db") is None
    assert scrub('role "u" with p@ss failed', "postgresql://u:p%40ss@h/db") == 'role "u" with *** failed'
    # libpq quotes pieces of an address it cannot parse: nothing of the text is kept then.
    text = scrub('invalid integer value "pa" for connection option "port"', "postgresql://u:pa/ss@h/db")
    assert '"pa"' not in text and "malformed" in text
    assert describe_address("postgresql://u:pw@db:5433/pcnet") == "db:5433/pcnet"
