"""The deployment CA, certificates, TLS options (verified in memory with real TLS) and TLSFiles."""

import ipaddress
import stat

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet import task

from pcnet.errors import ConfigError
from pcnet.net import tls

from ._support import Recorder, connect_in_memory, tls_client, tls_server

# Our TLS code hands Twisted cryptography objects; pyOpenSSL's deprecation of its own X509/PKey
# objects must never be triggered by it.
pytestmark = pytest.mark.filterwarnings("error:Passing pyOpenSSL:DeprecationWarning")


def handshake(server_options, client_options, message=b"ping\n"):
    """Connect in memory with real TLS; the client writes `message`.

    Returns (client app protocol, server app protocol or None)."""
    clock = task.Clock()
    server_app, client_app = Recorder("server"), Recorder("client")
    server = tls_server(server_app, server_options, clock)
    client = tls_client(client_app, client_options, clock)
    pump = connect_in_memory(server, client, clock)
    client_app.instances[0].transport.write(message)
    pump.flush()
    return client, server, client_app.instances[0], (server_app.instances or [None])[0]


def sans(cert_pem):
    cert = x509.load_pem_x509_certificate(cert_pem)
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def test_ca_is_a_ca_limited_to_end_entities(pki):
    cert = x509.load_pem_x509_certificate(pki.ca_pem)
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca and bc.path_length == 0
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign


def test_names_go_into_subject_alt_name_with_the_right_types(pki):
    names = sans(pki.server_pem)
    assert names.get_values_for_type(x509.DNSName) == ["pcnet.test", "localhost"]
    assert names.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]


def test_internationalised_names_are_stored_as_a_labels(pki):
    cert, _ = tls.issue_certificate(pki.ca_pem, pki.ca_key_pem, ["drucker.bücher.example"])
    assert sans(cert).get_values_for_type(x509.DNSName) == ["drucker.xn--bcher-kva.example"]


def test_server_and_client_certificates_have_their_extended_key_usage(pki):
    def eku(pem):
        cert = x509.load_pem_x509_certificate(pem)
        return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)

    assert eku(pki.server_pem) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert eku(pki.client_pem) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_a_certificate_needs_a_name(pki):
    with pytest.raises(ValueError):
        tls.issue_certificate(pki.ca_pem, pki.ca_key_pem, [])


def test_right_name_verifies_and_negotiates_pcnet(pki):
    client, server, client_app, server_app = handshake(
        tls.server_tls_options(pki.server_pem, pki.server_key_pem),
        tls.client_tls_options("pcnet.test", pki.ca_pem),
    )
    assert client_app.lost is None
    assert server_app.received == b"ping\n"
    assert client.negotiatedProtocol == b"pcnet/1"
    assert server.negotiatedProtocol == b"pcnet/1"


def test_ip_address_in_san_verifies(pki):
    _, _, client_app, server_app = handshake(
        tls.server_tls_options(pki.server_pem, pki.server_key_pem),
        tls.client_tls_options("127.0.0.1", pki.ca_pem),
    )
    assert client_app.lost is None
    assert server_app.received == b"ping\n"


@pytest.mark.parametrize("name", ["other.example", "10.9.9.9"])
def test_wrong_name_is_rejected(pki, name):
    _, _, client_app, server_app = handshake(
        tls.server_tls_options(pki.server_pem, pki.server_key_pem),
        tls.client_tls_options(name, pki.ca_pem),
    )
    assert client_app.lost is not None
    assert client_app.lost.check(VerificationError)
    assert server_app is None or server_app.received == b""


def test_certificate_from_another_ca_is_rejected(pki):
    _, _, client_app, server_app = handshake(
        tls.server_tls_options(pki.other_server_pem, pki.other_server_key_pem),
        tls.client_tls_options("pcnet.test", pki.ca_pem),
    )
    assert client_app.lost is not None
    assert client_app.lost.check(SSL.Error)
    assert server_app is None or server_app.received == b""


def test_client_certificate_is_offered_and_verified(pki):
    _, server, _client_app, server_app = handshake(
        tls.server_tls_options(
            pki.server_pem, pki.server_key_pem, pki.ca_pem, request_client_cert=True
        ),
        tls.client_tls_options(
            "pcnet.test",
            pki.ca_pem,
            client_cert_pem=pki.client_pem,
            client_key_pem=pki.client_key_pem,
        ),
    )
    assert server_app.received == b"ping\n"
    peer = server.getPeerCertificate().to_cryptography()
    names = peer.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["print01"]


def test_client_certificate_is_optional_when_requested(pki):
    _, server, client_app, server_app = handshake(
        tls.server_tls_options(
            pki.server_pem, pki.server_key_pem, pki.ca_pem, request_client_cert=True
        ),
        tls.client_tls_options("pcnet.test", pki.ca_pem),
    )
    assert client_app.lost is None
    assert server_app.received == b"ping\n"
    assert server.getPeerCertificate() is None


def test_client_certificate_from_another_ca_is_refused(pki):
    # A client certificate signed by an unrelated CA: the server must not accept it.
    ca2, ca2_key = tls.create_ca("unrelated")
    other_client, other_key = tls.issue_certificate(ca2, ca2_key, ["intruder"], client=True)
    _, _, client_app, server_app = handshake(
        tls.server_tls_options(
            pki.server_pem, pki.server_key_pem, pki.ca_pem, request_client_cert=True
        ),
        tls.client_tls_options(
            "pcnet.test", pki.ca_pem, client_cert_pem=other_client, client_key_pem=other_key
        ),
    )
    assert client_app.lost is not None
    assert server_app is None or server_app.received == b""


def test_client_without_alpn_gets_no_protocol(pki):
    _client, server, _client_app, server_app = handshake(
        tls.server_tls_options(pki.server_pem, pki.server_key_pem),
        tls.client_tls_options("pcnet.test", pki.ca_pem, alpn=()),
    )
    assert server_app.received == b"ping\n"
    assert server.negotiatedProtocol is None


def test_request_client_cert_needs_the_ca(pki):
    with pytest.raises(ValueError):
        tls.server_tls_options(pki.server_pem, pki.server_key_pem, request_client_cert=True)


def test_client_cert_and_key_come_together(pki):
    with pytest.raises(ValueError):
        tls.client_tls_options("pcnet.test", pki.ca_pem, client_cert_pem=pki.client_pem)


# --- TLSFiles ---------------------------------------------------------------------------------


def test_tls_files_round_trip_with_private_keys_0600(tmp_path, pki):
    files = tls.TLSFiles(tmp_path / "tls")
    material = tls.TLSMaterial(pki.ca_pem, pki.ca_key_pem, pki.server_pem, pki.server_key_pem)
    files.store(material)
    assert files.exists()
    assert files.load() == material
    for name, mode in [("ca.key", 0o600), ("server.key", 0o600), ("ca.pem", 0o644),
                       ("server.pem", 0o644)]:
        assert stat.S_IMODE((tmp_path / "tls" / name).stat().st_mode) == mode, name
    assert not [p for p in (tmp_path / "tls").iterdir() if p.name.startswith(".")]


def test_tls_files_ensure_creates_once_then_loads(tmp_path):
    files = tls.TLSFiles(tmp_path)
    first = files.ensure(["app.example", "10.0.0.5"])
    assert first.ca_key_pem is not None
    assert sans(first.cert_pem).get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.0.0.5")
    ]
    assert files.ensure(["other"]) == first
    # Missing server certificate only: reissued from the existing CA.
    (tmp_path / "server.pem").unlink()
    again = files.ensure(["app.example"])
    assert again.ca_pem == first.ca_pem and again.cert_pem != first.cert_pem
    # The result is usable as server options.
    again.server_options()


def test_tls_files_ca_without_key_is_accepted_when_loading(tmp_path, pki):
    files = tls.TLSFiles(tmp_path)
    files.store(tls.TLSMaterial(pki.ca_pem, None, pki.server_pem, pki.server_key_pem))
    assert files.load().ca_key_pem is None


def test_tls_files_missing_file_is_a_config_error_naming_it(tmp_path):
    with pytest.raises(ConfigError, match="ca.pem"):
        tls.TLSFiles(tmp_path).load()


def test_tls_files_garbage_certificate_is_a_config_error(tmp_path, pki):
    files = tls.TLSFiles(tmp_path)
    files.store(tls.TLSMaterial(pki.ca_pem, None, pki.server_pem, pki.server_key_pem))
    (tmp_path / "server.pem").write_bytes(b"not a certificate")
    with pytest.raises(ConfigError, match="server.pem"):
        files.load()


def test_tls_files_cannot_issue_without_ca_key(tmp_path, pki):
    (tmp_path / "ca.pem").write_bytes(pki.ca_pem)
    with pytest.raises(ConfigError, match="ca.key"):
        tls.TLSFiles(tmp_path).ensure(["x"])
