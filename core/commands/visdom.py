"""`python -m core visdom [--port P] [--host H]`: the Visdom server for the live view; `--stop` ends the one this
store's commands started (`make run` leaves it running)."""

from __future__ import annotations

import argparse

from core import servers, signals, visdom_server

HELP = "start the Visdom server (bound to 127.0.0.1) with its env files under mlruns/visdom/, or --stop it"
EXAMPLES = ["python -m core visdom", "python -m core visdom --port 8098   (then track.visdom_url=http://127.0.0.1:8098)",
            "python -m core visdom --stop           (the server make run started; or: make stop)"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    servers.add_address_arguments(parser, visdom_server.DEFAULT_PORT)
    servers.add_stop_argument(parser, "Visdom server (make run leaves it running)")


def main(args: argparse.Namespace) -> int:
    if args.stop:
        return servers.print_stopped(visdom_server.stop(), "Visdom server")
    signals.install_signal_handlers()  # SIGTERM stops the server too instead of orphaning it
    process, url = visdom_server.start(args.port, args.host)
    folder = visdom_server.env_folder()
    print(f"Visdom: {url}   (env files: {folder}/, log: {folder / 'server.log'})", flush=True)
    print("Ctrl-C stops it.", flush=True)
    servers.run_until_interrupted(process)
    return 0

