"""stream-release-lint on code that pins and code that does not (each check both ways)."""

import json
import subprocess
import sys
import textwrap

import pytest

from stream_release.lint import check_files, check_source, main


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

PINS.update(
    {
        "a shortcut and a helper that builds the response": (
            """
            def serve(obj):
                return FileResponse(open(obj.path, "rb"))

            def download(request, pk):
                doc = get_object_or_404(Document, pk=pk)
                return serve(doc)
            """,
            [("SR001", 7)],
        ),
        "a queryset bound to a name, iterated by a generator given it": (
            """
            def rows(queryset):
                for item in queryset:
                    yield item.name

            def export(request):
                qs = Item.objects.filter(active=True)
                return StreamingHttpResponse(rows(qs))
            """,
            [("SR003", 3)],
        ),
        "a related manager iterated in the body": (
            """
            def export(request, pk):
                def body():
                    for source in collection.source_set.all():
                        yield source.name
                return StreamingHttpResponse(body())
            """,
            [("SR003", 4)],
        ),
        "iterator() one generator deeper": (
            """
            def inner():
                yield from Item.objects.all().iterator(chunk_size=1000)

            def rows():
                for item in inner():
                    yield item.name

            def export(request):
                return StreamingHttpResponse(rows())
            """,
            [("SR002", 3)],
        ),
        "iterator() as the body itself": (
            """
            def export(request):
                return StreamingHttpResponse(Item.objects.values_list("name", flat=True).iterator())
            """,
            [("SR002", 3)],
        ),
        "iterator passed uncalled to a factory": (
            """
            def csv_response(rows):
                return StreamingHttpResponse(write(rows()))

            def export(request):
                sources = Source.objects.filter(active=True)
                return csv_response(sources.iterator)
            """,
            [("SR002", 7)],
        ),
    }
)

PINS["a method streaming the queryset it is given"] = (
    """
    class ExportView(View):
        def stream_csv(self, queryset):
            for item in queryset:
                yield item.name

        def get(self, request):
            return StreamingHttpResponse(self.stream_csv(self.get_queryset()))
    """,
    [("SR003", 4)],
)

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
    "a body that releases through a helper of its own": """
        from contextlib import contextmanager

        @contextmanager
        def released():
            connections.close_all()
            yield

        def chat(request):
            doc = Document.objects.get(pk=1)
            def body():
                with released():
                    yield from ask(doc)
            return StreamingHttpResponse(body())
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


def test_a_view_and_its_helper_in_two_files_are_read_together(tmp_path):
    (tmp_path / "responses.py").write_text("def serve_file(doc):\n    return FileResponse(open(doc.path, 'rb'))\n")
    (tmp_path / "views.py").write_text(
        "def download(request, pk):\n    doc = Document.objects.get(pk=pk)\n    return serve_file(doc)\n"
    )
    findings, errors = check_files(sorted(tmp_path.glob("*.py")))
    assert errors == [] and [(f.path.rsplit("/", 1)[1], f.line, f.code) for f in findings] == [("views.py", 3, "SR001")]
    assert check_source((tmp_path / "views.py").read_text()) == []  # alone, the helper is unknown


def test_a_release_function_of_your_own_can_be_named(tmp_path, capsys):
    (tmp_path / "views.py").write_text(
        "def export(request):\n    rows = list(Item.objects.all())\n    give_back()\n"
        "    return StreamingHttpResponse(iter(rows))\n"
    )
    assert main([str(tmp_path)]) == 1
    capsys.readouterr()
    assert main(["--release-name", "give_back", str(tmp_path)]) == 0
