"""stream-release-lint on code that pins and code that does not (each check both ways)."""

import json
import subprocess
import sys
import textwrap

import pytest

from stream_release.lint import check_source, main


def codes(source):
    return [(f.code, f.line) for f in check_source(textwrap.dedent(source))]


PINS = {
    "query then stream": (
        """
        def export(request):
            rows = list(Item.objects.filter(active=True))
            return StreamingHttpResponse(render(rows))
        """,
        [("SR001", 4)],
    ),
    "a write then a file": (
        """
        def download(request, pk):
            report = Report.objects.get(pk=pk)
            report.save()
            return FileResponse(open(report.path, "rb"))
        """,
        [("SR001", 5)],
    ),
    "header then iterator": (
        """
        def export(request):
            def rows():
                yield "id\\n"
                for item in Item.objects.order_by("pk").iterator():
                    yield f"{item.pk}\\n"
            return StreamingHttpResponse(rows())
        """,
        [("SR002", 5)],
    ),
    "iterator in a generator expression": (
        """
        def export(request):
            body = (f"{i.pk}\\n" for i in Item.objects.all().iterator(chunk_size=100))
            return ReleasingStreamingHttpResponse(body)
        """,
        [("SR002", 3)],
    ),
    "a queryset iterated in the body": (
        """
        def generate():
            for item in Item.objects.filter(active=True):
                yield item.name

        def export(request):
            return StreamingHttpResponse(generate())
        """,
        [("SR003", 3)],
    ),
    "server-sent events polling": (
        """
        async def events(request):
            async def stream():
                while True:
                    count = await Message.objects.filter(unread=True).acount()
                    yield f"data: {count}\\n\\n"
            return StreamingHttpResponse(stream(), content_type="text/event-stream")
        """,
        [("SR003", 5)],
    ),
    "django-fast-export": (
        """
        def export(request):
            return StreamingCSVResponse.from_queryset(Item.objects.all())
        """,
        [("SR002", 3)],
    ),
}

RELEASES = {
    "released": """
        def export(request):
            rows = list(Item.objects.filter(active=True))
            return ReleasingStreamingHttpResponse(render(rows))
        """,
    "released by hand": """
        def export(request):
            rows = list(Item.objects.all())
            release_connections()
            return StreamingHttpResponse(render(rows))
        """,
    "batches in the body": """
        def export(request):
            rows = (r for batch in batches(Item.objects.values("pk"), 500) for r in batch)
            return ReleasingStreamingHttpResponse(rows)
        """,
    "no database": """
        def export(request):
            return StreamingHttpResponse(iter([b"a", b"b"]))
        """,
    "polling released after each event": """
        async def events(request):
            async def stream():
                while True:
                    await arelease_connections()
                    yield "data: ping\\n\\n"
            return StreamingHttpResponse(stream())
        """,
    "a queryset iterated outside any stream": """
        def report(request):
            return HttpResponse("".join(i.name for i in Item.objects.all()))
        """,
    "suppressed": """
        def export(request):
            rows = list(Item.objects.all())
            return StreamingHttpResponse(render(rows))  # noqa: SR001
        """,
}


@pytest.mark.parametrize("name", PINS)
def test_code_that_pins_is_found(name):
    source, expected = PINS[name]
    assert codes(source) == expected


@pytest.mark.parametrize("name", RELEASES)
def test_code_that_releases_or_never_queries_is_not(name):
    assert codes(RELEASES[name]) == []


def test_a_suppression_names_its_code():
    source = """
        def export(request):
            rows = list(Item.objects.all())
            return StreamingHttpResponse(render(rows))  # noqa: SR002
        """
    assert codes(source) == [("SR001", 4)]


def test_the_command_exits_1_on_findings_with_text_and_json(tmp_path, capsys):
    (tmp_path / "views.py").write_text(textwrap.dedent(PINS["query then stream"][0]))
    (tmp_path / "clean.py").write_text(textwrap.dedent(RELEASES["released"]))
    assert main([str(tmp_path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith(f"{tmp_path / 'views.py'}:4:12: SR001 StreamingHttpResponse built")
    assert main(["--format", "json", str(tmp_path)]) == 1
    (finding,) = json.loads(capsys.readouterr().out)
    assert finding["code"] == "SR001" and finding["line"] == 4
    assert main(["--select", "SR002", str(tmp_path)]) == 0


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--select", "SR999", str(tmp_path)])
    assert exit.value.code == 2 and "--select: unknown code SR999" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit:
        main([str(tmp_path / "nowhere")])
    assert exit.value.code == 2 and "does not exist" in capsys.readouterr().err
    (tmp_path / "broken.py").write_text("def (:\n")
    assert main([str(tmp_path)]) == 2


def test_it_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "stream_release.lint", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "SR001" in result.stdout
