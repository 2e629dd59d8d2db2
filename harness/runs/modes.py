"""How a run loads its cells: a fixed load for duration_s (`make bench`), or a step load that
searches each cell's breaking point (`make capacity`). bench.py runs a cell the same way under
either; what differs (the Locust shape, how a cell is measured, the results file, the tables and
plots at the end) is a method of the mode's type."""

import functools
import os

from harness.pages import html_report, terminal
from harness.results import summary
from harness.runs import capacity


class LoadMode:
    """The interface bench.run and bench._run_cell call; FixedLoad and StepLoad implement it."""

    kind = ""  # run.json's "kind"
    results_file = ""  # the run's one CSV, a row per cell
    outputs_name = ""  # what the run prints last: "report" or "plots"
    outputs_what = ""  # the same, in a message that it could not be written

    @property
    def results_name(self) -> str:
        """How the run names its CSV at its end: "summary", "capacity"."""
        return self.results_file.removesuffix(".csv")

    def check(self, cells):
        """Refuse, before anything starts, cells this mode cannot run."""

    def planned_s(self, params) -> float:
        """How long the cell's load lasts, for the progress bar and the time limit."""
        raise NotImplementedError

    def shape_options(self, cell_dir, params) -> list | None:
        """Locust's load shape (locustfiles/step_shape.py) and its options; None: a fixed number
        of users for duration_s."""
        return None

    def measure(self, cell_dir, cell, context: summary.CellContext, requests):
        """A function of no arguments that measures the cell from its raw files: its row."""
        raise NotImplementedError

    def write_rows(self, path, rows):
        raise NotImplementedError

    def finish_cell(self, cell_dir, row):
        """After a cell measured ok: anything the mode keeps in the cell's own directory."""

    def cell_text(self, label, row) -> str:
        raise NotImplementedError

    def print_tables(self, rows, console):
        raise NotImplementedError

    def outputs(self, run_dir, rows) -> list:
        """Write the run's report or plots; the files."""
        raise NotImplementedError


class FixedLoad(LoadMode):
    """make bench: each cell's streams and probes for duration_s; summary.csv, report.html."""

    kind, results_file = "bench", "summary.csv"
    outputs_name, outputs_what = "report", "report.html"

    def planned_s(self, params):
        return params.duration_s

    def measure(self, cell_dir, cell, context, requests):
        return functools.partial(summary.summarize, cell_dir, cell.variant, context, requests)

    def write_rows(self, path, rows):
        summary.write(path, rows)

    def cell_text(self, label, row):
        return terminal.bench_cell_text(label, row)

    def print_tables(self, rows, console):
        terminal.print_table(rows, console)
        terminal.print_headline(rows, console)

    def outputs(self, run_dir, rows):
        return [html_report.write(run_dir)]


class StepLoad(LoadMode):
    """make capacity: each cell under a step load of slow streams until an objective breaks;
    capacity.csv (the run's and each cell's), the capacity plots."""

    kind, results_file = "capacity", "capacity.csv"
    outputs_name, outputs_what = "plots", "the capacity plots"

    def check(self, cells):
        capacity.refuse_unsupported(cells)

    def planned_s(self, params):
        return capacity.planned_s(params)

    def shape_options(self, cell_dir, params):
        return [*capacity.shape_options(params), "--steps-file", os.path.join(cell_dir, capacity.STEPS_FILE)]

    def measure(self, cell_dir, cell, context, requests):
        return functools.partial(capacity.measure, cell_dir, cell, context, requests)

    def write_rows(self, path, rows):
        capacity.write_verdicts(path, rows)

    def finish_cell(self, cell_dir, row):
        capacity.write_verdicts(os.path.join(cell_dir, "capacity.csv"), [row])

    def cell_text(self, label, row):
        return terminal.capacity_cell_text(label, row)

    def print_tables(self, rows, console):
        terminal.print_capacity_table(rows, console)

    def outputs(self, run_dir, rows):
        from harness.pages import plots  # matplotlib, once it is needed

        return plots.capacity_run(run_dir, rows)
