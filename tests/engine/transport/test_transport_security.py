"""require_secure(url, setting): plain text only on loopback, the TLS form, or the explicit switch."""

from __future__ import annotations

import pytest

from wojak.engine.protocol import InsecureTransportError, is_loopback, require_secure


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/x", "http://127.200.3.4/x", "http://localhost/x", "http://LOCALHOST.:1/x",
        "http://[::1]:9000/x", "http://[::ffff:127.0.0.1]/x", "amqp://guest:guest@127.0.0.1:5672/",
        "couchbase://127.0.0.1:11210,localhost?bucket=b", "https://anywhere.example.com/x",
        "amqps://u:p@mq.example.com/", "couchbases://cb1.example.com,cb2.example.com?bucket=b",
        "sqlite:///x.sqlite", "sqs://queue", "lambda://f",
    ],
)  # fmt: skip
def test_accepted(url):
    require_secure(url, "SETTING", env={})


@pytest.mark.parametrize(
    "url, scheme, tls",
    [
        ("http://example.com/x", "http", "https"), ("http://10.0.0.1/x", "http", "https"),
        ("http://[2001:db8::1]:80/x", "http", "https"), ("http://127.0.0.1.example.com/x", "http", "https"),
        ("amqp://u:secret@mq.example.com:5672/", "amqp", "amqps"), ("amqp:///vhost", "amqp", "amqps"),
        ("couchbase://127.0.0.1,cb.example.com?bucket=b", "couchbase", "couchbases"),
        ("HTTP://EXAMPLE.COM/", "http", "https"),
    ],
)  # fmt: skip
def test_refused_names_the_setting_the_tls_form_and_the_switch(url, scheme, tls):
    with pytest.raises(InsecureTransportError) as err:
        require_secure(url, "WOJAK_SOMETHING", env={})
    message = str(err.value)
    assert message.startswith(f"WOJAK_SOMETHING: {scheme}://") and f"use {tls}://" in message
    assert "WOJAK_ALLOW_INSECURE_TRANSPORT=1" in message and "secret" not in message
    require_secure(url, "WOJAK_SOMETHING", env={"WOJAK_ALLOW_INSECURE_TRANSPORT": "1"})
    with pytest.raises(InsecureTransportError):  # only "1" switches it off
        require_secure(url, "WOJAK_SOMETHING", env={"WOJAK_ALLOW_INSECURE_TRANSPORT": "yes"})


def test_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("[::1]")
    assert not is_loopback("") and not is_loopback(None) and not is_loopback("0.0.0.0") and not is_loopback("example.com")
