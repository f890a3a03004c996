"""The live view of a running sweep: trials done of total, the running trials' epochs, the best so far."""

from __future__ import annotations

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from dltrain.sweep.board import Row, shown


class SweepDisplay:
    """A Rich live display on stderr, redrawn from the leaderboard rows it is given."""

    def __init__(self, name: str, metric: str, keys: list[str], epochs: int, console: Console | None = None) -> None:
        self.name = name
        self.metric = metric
        self.keys = keys
        self.epochs = epochs
        # Two redraws a second look live (progress.py measured their cost: about 1% of a core).
        self.live = Live(console=console or Console(stderr=True), refresh_per_second=2, transient=True)

    def start(self) -> None:
        """Show the display."""
        self.live.start()

    def stop(self) -> None:
        """Remove the display (the command prints the leaderboard after it)."""
        self.live.stop()

    def update(self, rows: list[Row], total: int) -> None:
        """Redraw from the study's rows as they are now."""
        self.live.update(self.render(rows, total))

    def render(self, rows: list[Row], total: int) -> Group:
        """The header line and a table of the running trials."""
        done = [r for r in rows if r.state != "RUNNING"]
        pruned = sum(r.state == "PRUNED" for r in rows)
        failed = sum(r.state == "FAIL" for r in rows)
        best = next((r for r in rows if r.state == "COMPLETE"), None)
        header = f"sweep {self.name}: {len(done)}/{total} trials done ({pruned} pruned, {failed} failed)"
        if best is not None:
            header += f"; best {self.metric} {best.value:.4f} (trial {best.trial})"
        table = Table("trial", "epochs done", *self.keys, title="running", title_justify="left")
        for row in rows:
            if row.state == "RUNNING":
                epochs = row.params.get("training.epochs", self.epochs)
                table.add_row(str(row.trial), f"{row.epoch or 0}/{epochs}",
                              *(shown(row.params.get(k)) for k in self.keys))
        return Group(Text(header), table)
