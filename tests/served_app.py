"""The real app under uvicorn on a free port (in a thread), for tests that need real HTTP."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from app.main import create_app
from tests.conftest import make_settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve_app(tmp_path: Path, **settings: Any) -> Iterator[tuple[str, Path]]:
    """Yields the base URL and the app's SQLite file."""
    import uvicorn

    db_file = tmp_path / f"served-{uuid.uuid4().hex[:8]}.db"
    port = free_port()
    if settings.get("require_jwt"):
        # Production start-up needs the public base URL: it is the one this server answers on.
        settings.setdefault("public_base_url", f"http://127.0.0.1:{port}")
    app = create_app(make_settings(tmp_path, database_url=f"sqlite:///{db_file}", **settings))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", db_file
    finally:
        server.should_exit = True
        thread.join(timeout=15)
