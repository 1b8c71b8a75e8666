"""`python -m core.dashboard_server STORAGE HOST PORT`: optuna-dashboard over the project's Optuna storage.

Started as a child process by `python -m core dashboard`, which checks the port, waits until it
answers and stops it on Ctrl-C. The storage is opened as the studies open it (journal file, SQLite,
PostgreSQL), and the UI's assets ship in optuna-dashboard's wheel: it works offline. Requests under a
foreign Host or writes from a foreign origin are refused (core/host_guard.py).
"""

from __future__ import annotations

import sys

from core import host_guard


def main(argv: list[str]) -> None:
    import bottle
    import optuna_dashboard

    from core.study.storage import open_storage

    storage, host, port = argv
    # optuna-dashboard's run_server answers any Host and any origin: a foreign page could delete studies
    app = host_guard.guard_wsgi(optuna_dashboard.wsgi(open_storage(storage)), host_guard.allowed_hosts(host))
    bottle.run(app, host=host, port=int(port))  # the server run_server uses


if __name__ == "__main__":
    main(sys.argv[1:])
