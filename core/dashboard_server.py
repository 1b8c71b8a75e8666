"""`python -m core.dashboard_server STORAGE HOST PORT`: optuna-dashboard over the project's Optuna storage.

Started as a child process by `python -m core dashboard`, which checks the port, waits until it
answers and stops it on Ctrl-C. The storage is opened as the studies open it (journal file, SQLite,
PostgreSQL), and the UI's assets ship in optuna-dashboard's wheel: it works offline.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> None:
    import optuna_dashboard

    from core.study.storage import open_storage

    storage, host, port = argv
    optuna_dashboard.run_server(open_storage(storage), host=host, port=int(port))


if __name__ == "__main__":
    main(sys.argv[1:])
