"""When a run's cells run: one after another (every matrix but those that say otherwise), or
the cells of each repeat side by side (a matrix with `side_by_side = true`, such as overhead).

Side by side, the cells of a repeat start their load at the same moment, each with its own
app, load generator and throwaway PostgreSQL cluster (lane 1's log is postgres.log, lane 2's
postgres-2.log, ...), so nothing one cell measures is the other's. They see the same machine
at the same time: a comparison of the two (instrumented and not) then carries none of the
machine's drift from one minute to the next, which one after another moves a cell's CPU by
more than the difference being measured.
"""

from harness import UsageError


class OneAfterAnother:
    name = "one after another"

    def batches(self, cells) -> list[list[int]]:
        """The cells' indexes, in the groups that run at once: here each alone."""
        return [[i] for i in range(len(cells))]

    def check(self, matrix_name, host, external):
        pass


class SideBySide(OneAfterAnother):
    name = "side by side"

    def batches(self, cells) -> list[list[int]]:
        """The cells of each repeat together, in the order the matrix gives them."""
        groups = {}
        for i, cell in enumerate(cells):
            groups.setdefault(cell.repeat, []).append(i)
        return list(groups.values())

    def check(self, matrix_name, host, external):
        """Each lane needs a cluster and an app of its own."""
        if host:
            raise UsageError(
                f"MATRIX={matrix_name} runs the cells of a repeat side by side, each with an app the harness "
                f"starts, and HOST={host} is one app: run it without HOST=, or with a matrix file whose "
                f"[matrices.{matrix_name}] has no side_by_side"
            )
        if external is not None:
            raise UsageError(
                f"MATRIX={matrix_name} runs the cells of a repeat side by side, each against a throwaway "
                "PostgreSQL of its own, and BENCH_DATABASE_URL names one database: unset it, or use a matrix "
                f"file whose [matrices.{matrix_name}] has no side_by_side"
            )


def of(spec, matrix: str) -> OneAfterAnother:
    """When `matrix`'s cells run: side by side where matrix.toml says so."""
    return SideBySide() if spec.matrices[matrix].get("side_by_side") else OneAfterAnother()


def lane_file(name: str, lane: int) -> str:
    """Lane `lane`'s file of the run's directory (lanes count from 1): postgres.log, postgres-2.log."""
    stem, dot, ext = name.partition(".")
    return name if lane == 1 else f"{stem}-{lane}{dot}{ext}"


def lanes(batches) -> dict[int, int]:
    """{cell index: the lane (from 1) it runs in}: its place in its batch."""
    return {i: k + 1 for batch in batches for k, i in enumerate(batch)}
