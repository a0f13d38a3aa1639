"""Progress bar and end-of-run summary (rich), silent without a terminal or with --quiet."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table


class Feedback:
    """Counts files and images; shows a live line on a TTY. Never shows paths or values."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.files = 0
        self.images = 0
        self.t0 = time.perf_counter()
        self._progress: Progress | None = None
        self._task: Any = None

    def start(self, total: int | None = None, done: int = 0) -> None:
        self.t0 = time.perf_counter()
        if not self.enabled:
            return
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.completed} files"),
            BarColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task("deid", total=total, completed=done, rate="")

    def advance(self, images: int) -> None:
        self.files += 1
        self.images += images
        if self._progress is not None:
            dt = max(time.perf_counter() - self.t0, 1e-6)
            self._progress.update(self._task, advance=1, rate=f"{self.files / dt:.1f} files/s  {self.images / dt:.1f} images/s")

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def summary(self, data: dict[str, Any]) -> None:
        console = Console()
        table = Table(title="deid run", show_header=True)
        table.add_column("status")
        table.add_column("files", justify="right")
        for status, n in data.get("counts", {}).items():
            table.add_row(status, str(n))
        console.print(table)
        reasons = data.get("reasons", {})
        if reasons:
            rt = Table(show_header=True)
            rt.add_column("reason")
            rt.add_column("files", justify="right")
            for code, n in reasons.items():
                rt.add_row(code, str(n))
            console.print(rt)
        console.print(
            f"{data.get('files_per_s')} files/s, {data.get('images_per_s')} images/s, "
            f"device {', '.join(data.get('device', []))}, workers {data.get('workers')}, "
            f"profile {data['profile']['name']} {data['profile']['version']}"
        )
