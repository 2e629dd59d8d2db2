"""matrix.toml is the one place backends, variants, scenarios and matrices are declared."""

import re
from dataclasses import replace

import pytest

from benchapp.variants import VARIANTS
from harness import ROOT, UsageError
from harness.spec import matrix
from tests.conftest import SPEC

pytestmark = pytest.mark.fast  # starts no server: make test-fast


def test_every_declared_variant_has_code_and_every_coded_variant_is_declared():
    assert list(SPEC.variants) == list(VARIANTS)


def test_default_matrix_runs_every_variant_with_several_times_more_streams_than_connections():
    cells = SPEC.cells("default")  # under gevent: every variant but the async ones, which MATRIX=servers runs
    assert {c.variant for c in cells} == {v for v, table in SPEC.variants.items() if "app" not in table}
    assert {c.variant for c in SPEC.cells("servers")} >= set(VARIANTS) - {c.variant for c in cells}
    for cell in cells:
        assert cell.params.streams >= 3 * cell.params.pool_max
        assert cell.name == f"{cell.backend.name}/{cell.variant}/{cell.scenario}"


@pytest.mark.parametrize(
    "name, limit_s",
    [
        ("default", 300),
        ("smoke", 60),
        ("backends", 800),
        ("safety", 600),
        ("smoke-safety", 60),
        ("faults", 1000),
        ("smoke-faults", 80),
        ("servers", 1700),
        ("servers-abort", 700),
        ("servers-sse", 1600),
        ("servers-memory", 260),
        ("smoke-servers", 150),
        ("switch", 600),
    ],
)
def test_named_matrices_fit_their_time_budget(name, limit_s):
    from harness.runs.bench import CELL_OVERHEAD_S

    planned = sum(c.params.duration_s + CELL_OVERHEAD_S for c in SPEC.cells(name))
    assert planned <= limit_s - 10  # room for PostgreSQL start and seeding


def test_every_other_repeat_runs_the_cells_in_reverse_order():
    """So that in MATRIX=overhead REPEAT=n the instrumented cell runs first in half the repeats."""
    once = [c.scenario for c in SPEC.cells("overhead")]
    cells = SPEC.cells("overhead", repeat=4)
    by_repeat = [[c.scenario for c in cells if c.repeat == r] for r in range(1, 5)]
    assert once == ["overhead", "overhead-off"]
    assert by_repeat == [once, once[::-1], once, once[::-1]]
    assert [c.repeat for c in cells] == [1, 1, 2, 2, 3, 3, 4, 4]  # a repeat's cells still run together


def test_overrides_apply_last_and_are_checked():
    cell = SPEC.cells("smoke", {"duration_s": 3, "pool_max": 2})[0]
    assert (cell.params.duration_s, cell.params.pool_max) == (3, 2)
    assert cell.params.streams == SPEC.scenarios["smoke-stream"]["streams"]


def test_backend_options_get_the_cells_pool_max():
    params = SPEC.params("slow-server", {"pool_max": 7})
    assert SPEC.backends["geventpool"].django_options(params) == {"MAX_CONNS": 7}


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"streams": 0}, "streams=0 in scenario slow-server is too small: use at least 1"),
        ({"duration_s": 2.5}, "duration_s=2.5 in scenario slow-server must be a whole number of seconds"),
        ({"probe_rate": "fast"}, "probe_rate='fast' in scenario slow-server must be a number"),
        ({"stream": 3}, "unknown parameter 'stream' in scenario slow-server"),
        ({"pool_max": 60}, "pool_max=60 x workers=1 in scenario slow-server exceeds db_max_connections=50"),
        ({"streams": 990}, "streams=990 in scenario slow-server and up to 35 probes in flight are more than"),
        ({"probe_rate": float("nan")}, "probe_rate=nan in scenario slow-server must be a number"),
        ({"duration_s": float("inf")}, "duration_s=inf in scenario slow-server must be a whole number"),
        ({"chunk_bytes": 20_000_000}, "chunk_bytes=20000000 in scenario slow-server is too large: use at most"),
    ],
)
def test_bad_parameters_are_refused_with_the_parameter_named(overrides, message):
    with pytest.raises(UsageError) as info:
        SPEC.params("slow-server", overrides)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("[defaults\n", "is not valid TOML"),
        ("[defaults]\nx=1\n", "needs a non-empty [backends] table"),
    ],
)
def test_malformed_matrix_files_are_refused(tmp_path, text, message):
    path = tmp_path / "matrix.toml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        matrix.load(path)


def test_a_matrix_naming_an_undeclared_variant_is_refused(tmp_path):
    text = matrix.MATRIX_FILE.read_text().replace(
        'variants = ["hold", "close-old", "force-close", "release"]\nscenarios = ["smoke-stream"]',
        'variants = ["hold", "close-young"]\nscenarios = ["smoke-stream"]',
    )
    path = tmp_path / "matrix.toml"
    path.write_text(text)
    with pytest.raises(UsageError, match="names variant 'close-young', which is not declared"):
        matrix.load(path)


@pytest.mark.parametrize(
    "replacement, message",
    [
        ('gives_back = "per-query"', 'gives_back = "per-query" needs a pool: set pooled = true'),
        ('gives_back = "sometimes"', "gives_back = 'sometimes': use one of at-close, per-query"),
    ],
)
def test_when_a_backend_gives_its_connection_back_is_checked(tmp_path, replacement, message):
    stock = '[backends.stock]\ndescription = "'
    text = matrix.MATRIX_FILE.read_text()
    assert stock in text
    path = tmp_path / "matrix.toml"
    path.write_text(text.replace(stock, f'[backends.stock]\n{replacement}\ndescription = "'))
    with pytest.raises(UsageError, match=re.escape(f"[backends.stock] {message}")):
        matrix.load(path)


def test_unknown_matrix_lists_the_known_ones():
    with pytest.raises(
        UsageError,
        match=re.escape(f"MATRIX=nope is unknown: use one of {', '.join(SPEC.matrices)}"),
    ):
        SPEC.cells("nope")


def test_stream_bounds_are_the_apps_own():
    from benchapp.views import STREAM_PARAMS

    for name, _default, low, high in STREAM_PARAMS:
        assert matrix.Params.LIMITS[name][:2] == (low, high)


def test_probe_connections_are_counted_as_the_probe_user_opens_them():
    # In a subprocess: importing Locust monkey-patches the process it runs in.
    import subprocess
    import sys

    cases = [(5, 5), (0.5, 3), (100, 0.2)]
    code = (
        "import sys; sys.path.insert(0, 'locustfiles'); from probe import probes_in_flight; "
        f"print([probes_in_flight(r, t) for r, t in {cases!r}])"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=matrix.ROOT, capture_output=True, text=True, check=True)
    in_flight = eval(result.stdout)
    for (rate, timeout), probes in zip(cases, in_flight, strict=True):
        params = SPEC.params("slow-server", {"probe_rate": rate, "probe_timeout_s": timeout})
        assert params.client_connections == params.streams + probes


def test_full_matrix_is_every_backend_variant_and_scenario_but_the_short_ones_the_faults_capacity_and_peer():
    cells = SPEC.cells("full")
    short = (
        {
            "quick-stream",
            "smoke-stream",
            "capacity-5000",
            "capacity-max",
            "peer-slow-read",
            "peer-slow-read-small-window",
            "overhead",
            "overhead-off",
            "server-stream",
            "smoke-server",
            "sse",
            "big-body",
            "slow-readers",
            "slow-readers-switch",
            "burst-switch",
        }
        | {s for s in SPEC.scenarios if SPEC.params(s).fault != "none"}
        | set(SPEC.matrices["target"]["scenarios"])
    )  # a target's own streams, not benchapp's
    wsgi = [v for v, table in SPEC.variants.items() if "app" not in table]  # under gevent: not the async ones
    assert {(c.backend.name, c.variant, c.scenario) for c in cells} == {
        (b, v, s) for b in SPEC.backends for v in wsgi for s in SPEC.scenarios if s not in short
    }
    assert len(cells) == len(SPEC.backends) * len(wsgi) * (len(SPEC.scenarios) - len(short))
    assert {c.server.name for c in cells} == {"gevent"}


def test_faults_matrix_is_every_backend_and_fault_with_and_without_release():
    cells = SPEC.cells("faults")
    assert {(c.backend.name, c.variant, c.params.fault) for c in cells} == {
        (b, v, f) for b in SPEC.backends for v in ("hold", "release") for f in matrix.FAULTS if f != "none"
    }
    for c in cells:  # without the fault the pool serves every stream and the probes
        assert c.params.streams < c.params.pool_max and 0 < c.params.fault_at_s < c.params.duration_s


def test_safety_matrix_is_every_backend_and_release_call_under_atomic_requests():
    cells = SPEC.cells("safety")
    calls = {"hold", "close-old", "force-close", "guarded-close", "release"}
    assert {(c.backend.name, c.variant) for c in cells} == {(b, v) for b in SPEC.backends for v in calls}
    assert all(c.params.atomic_requests for c in cells)
    assert not any(c.params.atomic_requests for c in SPEC.cells("default"))


def test_backends_matrix_covers_every_backend_and_release_call():
    cells = SPEC.cells("backends")
    calls = {"hold", "close-old", "force-close", "release"}
    assert {(c.backend.name, c.variant) for c in cells} >= {(b, v) for b in SPEC.backends for v in calls}
    assert {c.backend.name for c in cells if c.scenario == "burst"} >= {
        "geventpool",
        "geventpool-bounded",
        "native-pool",
    }


def test_a_scenario_starts_from_its_base_and_a_missing_or_looping_base_is_refused(tmp_path):
    on, off = SPEC.params("overhead"), SPEC.params("overhead-off")
    assert off == replace(on, instrument=False)
    assert on.streams == SPEC.scenarios["overhead"]["streams"] != SPEC.defaults["streams"]
    text = (ROOT / "matrix.toml").read_text()
    for extra, message in (
        ('\n[scenarios.x]\nbase = "nope"\n', "[scenarios.x] has base = 'nope', which is not a declared scenario"),
        ('\n[scenarios.x]\nbase = "y"\n[scenarios.y]\nbase = "x"\n', "which is part of a loop"),
    ):
        path = tmp_path / "m.toml"
        path.write_text(text + extra)
        with pytest.raises(UsageError, match=re.escape(message)):
            matrix.load(path)


def test_the_load_generator_takes_its_variants_from_the_cells_matrix_file(tmp_path):
    """A variant declared only in MATRIX_FILE= is one --variant accepts: the harness passes the
    file on to Locust, whose locustfiles read it before parsing their options."""
    import subprocess
    import sys

    from harness import ROOT
    from harness.measure.load import LOCUSTFILES, locust_command

    mine = tmp_path / "my.toml"
    mine.write_text(
        (ROOT / "matrix.toml")
        .read_text()
        .replace("[variants.hold]", '[variants.my-variant]\ndescription = "mine"\n\n[variants.hold]', 1)
        + '\n[matrices.mine]\nbackends = ["stock"]\nvariants = ["my-variant"]\nscenarios = ["smoke-stream"]\n'
    )
    cell = matrix.load(mine).cells("mine")[0]
    command = [str(a) for a in locust_command(cell, "http://127.0.0.1:1", tmp_path)]
    assert command[command.index("--matrix-file") + 1] == str(mine)
    assert "--matrix-file" not in [
        str(a) for a in locust_command(SPEC.cells("smoke")[0], "http://127.0.0.1:1", tmp_path)
    ]
    base = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        ",".join(str(f) for f in LOCUSTFILES),
        "--headless",
        "--host",
        "http://127.0.0.1:1",
        "-u",
        "1",
        "-r",
        "1",
        "-t",
        "1s",
        "--only-summary",
        "--variant",
        "my-variant",
    ]
    refused = subprocess.run(base, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "invalid choice: 'my-variant'" in refused.stderr
    taken = subprocess.run(
        base + ["--matrix-file", str(mine)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert "invalid choice" not in taken.stderr and "--run-time limit reached" in taken.stderr, taken.stderr[-2000:]


def test_all_names_every_backend_declared_including_one_added(tmp_path):
    """`backends = "all"` follows the file: a backend added to [backends] joins every such matrix."""
    from harness import ROOT

    mine = tmp_path / "my.toml"
    mine.write_text(
        (ROOT / "matrix.toml")
        .read_text()
        .replace(
            "[backends.stock]",
            '[backends.mine]\nengine = "django.db.backends.postgresql"\ndriver = "psycopg2"\nenv = "bench"\n'
            "conn_max_age = 30\n\n[backends.stock]",
            1,
        )
        + '\n[matrices.everything]\nbackends = "all"\nvariants = ["hold"]\nscenarios = ["smoke-stream"]\n'
    )
    spec = matrix.load(mine)
    assert [c.backend.name for c in spec.cells("everything")] == list(spec.backends)
    assert spec.backends["mine"].persistent and not spec.backends["mine"].pooled
    assert "mine" in {c.backend.name for c in spec.cells("safety")}


def test_server_runs_every_cell_of_the_matrix_under_the_servers_given():
    cells = SPEC.cells("servers-sse", servers=["uvicorn", "gthread"])
    assert {c.server.name for c in cells} == {"uvicorn", "gthread"}
    assert len(cells) == 2 * len({(c.backend.name, c.variant, c.scenario) for c in cells})
    # parts that become the same under one server run once
    once = SPEC.cells("smoke-servers", servers=["uvicorn"])  # stock x hold: in two of its parts
    assert len(once) == len({c.name for c in once})
    assert {c.server.name for c in once} == {"uvicorn"}


@pytest.mark.parametrize(
    "matrix_name, servers, message",
    [
        ("smoke", ["nope"], "SERVER=nope is unknown: use one of gevent, "),
        ("smoke", ["uvicorn"], "MATRIX=smoke SERVER=uvicorn: backend geventpool does not work under server uvicorn"),
        ("servers-sse", ["daphne"], None),
    ],
)
def test_server_refuses_what_cannot_run_in_one_line(matrix_name, servers, message):
    if message is None:
        assert {c.server.name for c in SPEC.cells(matrix_name, servers=servers)} == {"daphne"}
        return
    with pytest.raises(UsageError, match=re.escape(message)):
        SPEC.cells(matrix_name, servers=servers)
