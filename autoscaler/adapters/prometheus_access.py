"""How to reach Prometheus: its URL, the credentials it asks for, and the TLS files.

Secrets - a basic-auth password, a bearer token, the value of any extra header - never
appear in a repr, a str or an error message of this module. A user:password in the URL is
moved into basic auth and stripped from the URL, so that `url` is always safe to print.
`redact(text)` blanks every form of them (as given, percent-encoded, in the Basic header)
out of a text that came from elsewhere, such as an answer that echoes a request.

`PrometheusAccess.from_options` reads secrets from files (a Swarm secret is mounted as
/run/secrets/NAME) or from environment variables, so that none is on a command line.
"""

from __future__ import annotations

import base64
import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

_REDACTED = "<redacted>"
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_HEADER_VALUE = re.compile(r"^[^\s\x00-\x1f\x7f]([^\x00-\x08\x0a-\x1f\x7f]*[^\s\x00-\x1f\x7f])?$")


@dataclass(frozen=True, repr=False)
class PrometheusAccess:
    """The URL of Prometheus (http or https, with an optional path prefix) and how to
    authenticate: basic auth (`basic_user`, `basic_password`) or a bearer token, extra
    headers (name, value), a CA bundle to verify the server with, a client certificate and
    its key (PEM files). Raises ValueError, naming no secret, on a contradiction."""

    url: str
    basic_user: str | None = None
    basic_password: str | None = None
    bearer_token: str | None = None
    ca_bundle: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    _given_forms: tuple[str, ...] = field(default=(), init=False, compare=False)

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the Prometheus URL must be http://HOST[:PORT][/PATH] or https://...")
        if "@" in parts.path or parts.query or parts.fragment:
            raise ValueError("the Prometheus URL must not carry a query string, a fragment or "
                             "an '@' after its host (percent-encode a '/', '?', '#' or '@' in "
                             "a password: %2F, %3F, %23, %40)")
        try:
            parts.port  # noqa: B018
        except ValueError:
            raise ValueError("the port of the Prometheus URL is not a number") from None
        host = parts.netloc.rpartition("@")[2]
        given: list[str] = []
        if "@" in parts.netloc:
            if self.basic_user is not None or self.basic_password is not None:
                raise ValueError("the Prometheus URL carries a user, and basic_user or "
                                 "basic_password is given too: give one of them")
            userinfo = parts.netloc.rpartition("@")[0]
            raw_user, _, raw_password = userinfo.partition(":")
            given += [userinfo, raw_password] if ":" in userinfo else []
            object.__setattr__(self, "basic_user", urllib.parse.unquote(raw_user))
            object.__setattr__(self, "basic_password", urllib.parse.unquote(raw_password))
        object.__setattr__(self, "_given_forms", tuple(given))
        object.__setattr__(self, "url", urllib.parse.urlunsplit(
            (parts.scheme, host, parts.path.rstrip("/"), "", "")))
        object.__setattr__(self, "headers", tuple((str(n), str(v)) for n, v in self.headers))
        self._check(https=parts.scheme == "https")

    def _check(self, *, https: bool) -> None:
        if self.basic_password is not None and self.basic_user is None:
            raise ValueError("basic_password needs basic_user")
        if self.bearer_token is not None and self.basic_user is not None:
            raise ValueError("give basic auth or a bearer token, not both")
        if self.bearer_token == "":
            raise ValueError("the bearer token is empty")
        carried = [("the bearer token", self.bearer_token), ("basic_user", self.basic_user),
                   ("basic_password", self.basic_password),
                   *((f"the value of header {name}", value) for name, value in self.headers)]
        for what, text in carried:
            if text is not None and not _latin1(text):
                raise ValueError(f"{what} has a character an HTTP header cannot carry (one "
                                 "outside Latin-1)")
        for name, value in self.headers:
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not an HTTP header name")
            if not _HEADER_VALUE.match(value):
                raise ValueError(f"the value of header {name} is empty, or has a line break, a "
                                 "control character or surrounding spaces")
        names = [name.lower() for name, _ in self.headers]
        if len(set(names)) < len(names):
            raise ValueError("a header is given twice")
        if "authorization" in names and (self.basic_user is not None
                                         or self.bearer_token is not None):
            raise ValueError("an Authorization header is given with basic auth or a bearer "
                             "token: give one")
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("client_key needs client_cert")
        if not https and any(path is not None for path in self.tls_files()):
            raise ValueError("a CA bundle or a client certificate needs an https:// URL")

    def tls_files(self) -> tuple[str | None, str | None, str | None]:
        return self.ca_bundle, self.client_cert, self.client_key

    def authorization(self) -> str | None:
        """The Authorization header's value, if basic auth or a bearer token is given."""
        if self.bearer_token is not None:
            return f"Bearer {self.bearer_token}"
        if self.basic_user is not None:
            pair = f"{self.basic_user}:{self.basic_password or ''}".encode()
            return f"Basic {base64.b64encode(pair).decode('ascii')}"
        return None

    def _secrets(self) -> list[str]:
        found = [self.basic_password or "", self.bearer_token or "",
                 *(value for _, value in self.headers), *self._given_forms]
        authorization = self.authorization()
        if authorization is not None:
            found.append(authorization.split(" ", 1)[1])
        for secret in list(found):
            found += [urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)]
        return sorted({secret for secret in found if secret}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        """`text` with every secret of this access, in any form it is sent in, blanked."""
        for secret in self._secrets():
            text = text.replace(secret, _REDACTED)
        return text

    def __repr__(self) -> str:
        def secret(value: str | None) -> str:
            return "None" if value is None else _REDACTED

        headers = ", ".join(f"{name!r}: {_REDACTED}" for name, _ in self.headers)
        return (f"PrometheusAccess(url={self.url!r}, basic_user={self.basic_user!r}, "
                f"basic_password={secret(self.basic_password)}, "
                f"bearer_token={secret(self.bearer_token)}, ca_bundle={self.ca_bundle!r}, "
                f"client_cert={self.client_cert!r}, client_key={self.client_key!r}, "
                f"headers={{{headers}}})")

    __str__ = __repr__

    @classmethod
    def from_options(
        cls, url: str, *,
        basic_user: str | None = None,
        basic_password_file: str | None = None,
        basic_password_env: str | None = None,
        bearer_token_file: str | None = None,
        bearer_token_env: str | None = None,
        ca_bundle: str | None = None,
        client_cert: str | None = None,
        client_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        header_files: Mapping[str, str] | None = None,
    ) -> PrometheusAccess:
        """An access from command-line style options: each secret from a file or from an
        environment variable (by name), never from the option itself; `header_files` maps a
        header's name to the file holding its value. The TLS files must be readable now.
        Raises ValueError naming the option, file or variable, never the secret."""
        for option, path in (("CA bundle", ca_bundle), ("client certificate", client_cert),
                             ("client key", client_key)):
            if path is not None and not os.access(path, os.R_OK):
                raise ValueError(f"the {option} {path} cannot be read")
        values = dict(headers or {})
        for name, path in (header_files or {}).items():
            if name in values:
                raise ValueError(f"header {name} is given both as a value and as a file")
            values[name] = read_secret(f"the value of header {name}", file=path) or ""
        return cls(
            url,
            basic_user=basic_user,
            basic_password=read_secret("the basic-auth password", file=basic_password_file,
                                       env=basic_password_env),
            bearer_token=read_secret("the bearer token", file=bearer_token_file,
                                     env=bearer_token_env),
            ca_bundle=ca_bundle, client_cert=client_cert, client_key=client_key,
            headers=tuple(values.items()),
        )


MAX_SECRET_BYTES = 65536
"""The largest secret file read: a token or a password, not a whole file system's worth."""


def read_secret(what: str, *, file: str | os.PathLike[str] | None = None,
                env: str | None = None) -> str | None:
    """A secret from a file or an environment variable (None when neither is named),
    without surrounding whitespace (a file written by echo ends with a newline). Raises
    ValueError naming `what` and where it was looked for, never its value."""
    if file is not None and env is not None:
        raise ValueError(f"{what}: give a file or an environment variable, not both")
    if file is not None:
        try:
            if Path(file).exists() and not Path(file).is_file():
                raise ValueError(f"{what}: {file} is not a regular file (a FIFO or a device "
                                 "would block or never end)")
            if Path(file).stat().st_size > MAX_SECRET_BYTES:
                raise ValueError(f"{what}: {file} is over {MAX_SECRET_BYTES:,} bytes: not a "
                                 "secret")
            value = Path(file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
            raise ValueError(f"{what}: cannot read {file}: {reason}") from None
        where = f"the file {file}"
    elif env is not None:
        if env not in os.environ:
            raise ValueError(f"{what}: the environment variable {env} is not set")
        value, where = os.environ[env].strip(), f"the environment variable {env}"
    else:
        return None
    if not value:
        raise ValueError(f"{what}: {where} is empty")
    return value


def _latin1(text: str) -> bool:
    """Whether HTTP can carry `text` in a header as it is (requests sends Latin-1)."""
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True
