"""A real SMTP server for rota's email alert tests, on aiosmtpd (Debian python3-aiosmtpd).

Every message it accepts is written to MAILDIR/<n>.json as {mail_from, rcpt_tos, tls, login,
data}; MAILDIR/ready appears once it listens. TLS is STARTTLS by default, or from the first
byte with --implicit; --auth USER:PASSWORD makes it insist on that login (over TLS only, as a
real submission server does, unless it runs without TLS).

Usage: smtp.py --port P --maildir D [--cert C --key K [--implicit]] [--auth USER:PASSWORD]
"""

import argparse
import json
import os
import signal
import ssl
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Keep:
    """Writes each message to the mail directory, numbered in arrival order."""

    def __init__(self, maildir):
        self.maildir = maildir
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += 1
            n = self.count
        # The authenticator puts the user name in auth_data on success.
        login = session.auth_data if session.authenticated else None
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            # session.ssl is set by STARTTLS only; SMTPS is TLS from its first byte.
            "tls": session.ssl is not None
            or server.transport.get_extra_info("ssl_object") is not None,
            "login": login,
            "data": envelope.content.decode("utf-8", "replace"),
        }
        tmp = os.path.join(self.maildir, f"{n}.tmp")
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(self.maildir, f"{n}.json"))
        return "250 Message accepted for delivery"


def authenticator_for(user, password):
    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        return AuthResult(success=ok, handled=False, auth_data=user if ok else None)

    return authenticate


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--maildir", required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--implicit", action="store_true")
    parser.add_argument("--auth")
    args = parser.parse_args()

    tls = None
    if args.cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.cert, args.key)
    options = {}
    if tls and not args.implicit:
        options.update(tls_context=tls, require_starttls=True)
    if args.auth:
        user, password = args.auth.split(":", 1)
        options.update(
            authenticator=authenticator_for(user, password),
            auth_required=True,
            auth_require_tls=tls is not None,
        )
    controller = Controller(
        Keep(args.maildir),
        hostname="127.0.0.1",
        port=args.port,
        ssl_context=tls if args.implicit else None,
        **options,
    )
    controller.start()
    open(os.path.join(args.maildir, "ready"), "w").close()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
