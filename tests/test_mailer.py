"""The SMTP transport against a real aiosmtpd server: kept-alive connections and honest failures."""

from __future__ import annotations

import pytest

from service.mailer import SendError, Transport
from tests.servers import SmtpSink
from tests.world import mail


def _transport(sink: SmtpSink, **overrides) -> Transport:
    settings = {"SMTP_HOST": sink.host, "SMTP_PORT": sink.port, "SMTP_SECURITY": "none", "SMTP_TIMEOUT": 3,
                "SMTP_USERNAME": None, "SMTP_PASSWORD": None, **overrides}
    return Transport(settings)


def test_a_dead_kept_connection_and_a_refused_new_one_is_a_temporary_failure():
    sink = SmtpSink().start()
    transport = _transport(sink)
    transport.send(mail(), "roadmap@acumen.example", "bob@prospect.example", "1")
    sink.stop()  # the kept connection dies and the port refuses new ones
    with pytest.raises(SendError) as failure:
        transport.send(mail(), "roadmap@acumen.example", "bob@prospect.example", "2")
    assert not failure.value.permanent and not failure.value.uncertain


def test_a_kept_connection_that_died_is_replaced_once_and_the_mail_goes(sink):
    sink.clear()
    transport = _transport(sink)
    transport.send(mail(), "roadmap@acumen.example", "bob@prospect.example", "1")
    transport.smtp.sock.close()  # the server (or a NAT) dropped it while idle
    assert transport.send(mail(), "roadmap@acumen.example", "dana@prospect.example", "2").startswith("250")
    assert [m.rcpt_tos for m in sink.wait_for(2)] == [["bob@prospect.example"], ["dana@prospect.example"]]


def test_a_session_that_cannot_be_set_up_is_temporary_not_the_recipients_fault(sink):
    sink.clear()
    transport = _transport(sink, SMTP_SECURITY="starttls")  # the sink offers no STARTTLS: our setup is wrong
    with pytest.raises(SendError) as failure:
        transport.send(mail(), "roadmap@acumen.example", "bob@prospect.example", "1")
    assert not failure.value.permanent
    assert sink.messages == []
