"""`python -m core.visdom_guarded VISDOM_ARGS...`: Visdom's server as `python -m visdom.server` runs it, with
two changes made to its tornado Application before it starts:

- requests under a foreign Host, and writes (a POST to /events is form-encoded: a cross-site form can send
  it) or WebSockets from a foreign origin, get 403 (core/host_guard.py); Visdom itself takes any;
- it listens on exactly the --hostname given: Visdom binds 127.0.0.1 or else every address, IPv6's [::]
  included, whatever was asked for.
"""

from __future__ import annotations

import sys

from core import host_guard


def guarded_application(base: type, host: str) -> type:
    """A subclass of Visdom's tornado Application that refuses foreign requests and binds `host` only."""
    import tornado.web

    allowed = host_guard.allowed_hosts(host)

    class Forbidden(tornado.web.RequestHandler):
        def initialize(self, reason: str) -> None:
            self.reason = reason

        def prepare(self) -> None:  # finishing here skips the method, whatever it is
            self.set_status(403)
            self.finish(f"forbidden: {self.reason}\n")

    class Guarded(base):
        def find_handler(self, request, **kwargs):
            headers = request.headers
            reason = host_guard.refusal(request.method, headers.get("Host"), headers.get("Origin"),
                                        headers.get("Upgrade"), allowed)
            if reason:
                return self.get_handler_delegate(request, Forbidden, {"reason": reason})
            return super().find_handler(request, **kwargs)

        def listen(self, port, address=None, **kwargs):
            return super().listen(port, address=host, **kwargs)

    return Guarded


def main(argv: list[str]) -> None:
    from visdom.server import run_server

    host = argv[argv.index("--hostname") + 1]
    run_server.Application = guarded_application(run_server.Application, host)
    sys.argv = ["visdom.server", *argv]
    run_server.download_scripts_and_run()


if __name__ == "__main__":
    main(sys.argv[1:])
