"""`python -m core visdom [--port P] [--host H]`: the Visdom server for the live view."""

from __future__ import annotations

import argparse

from core import servers, signals, visdom_server

HELP = "start the Visdom server (bound to 127.0.0.1) with its env files under mlruns/visdom/"
EXAMPLES = ["python -m core visdom", "python -m core visdom --port 8098   (then track.visdom_url=http://127.0.0.1:8098)"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    servers.add_address_arguments(parser, visdom_server.DEFAULT_PORT)


def main(args: argparse.Namespace) -> int:
    signals.install_signal_handlers()  # SIGTERM stops the server too instead of orphaning it
    process, url = visdom_server.start(args.port, args.host)
    print(f"Visdom: {url}   (env files: {visdom_server.ENV_PATH}/, log: {visdom_server.ENV_PATH / 'server.log'})",
          flush=True)
    print("Ctrl-C stops it.", flush=True)
    servers.run_until_interrupted(process)
    return 0
