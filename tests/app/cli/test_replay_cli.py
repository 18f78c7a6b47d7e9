"""``gonogo replay`` on bad input: a clear message and exit 3, never a traceback; and a
Prometheus whose ``query_range`` answers only errors (in its documented error envelope)
is exit 3 naming the cause, while a replay that ran is exit 0."""

from __future__ import annotations

import json
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import typer
from typer.testing import CliRunner, Result

from app.cli import replay as replay_cli


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)  # a group, so that "replay" names the command
    replay_cli.register(app)
    return app


class _Prometheus(BaseHTTPRequestHandler):
    """``/api/v1/query_range``: a 400 ``bad_data`` error, or a one-series matrix."""

    fail = True

    def do_GET(self) -> None:
        if self.fail:
            status = 400
            error = "parse error at char 7 near <script>alert(1)</script>"
            body = {"status": "error", "errorType": "bad_data", "error": error}
        else:
            asked = parse_qs(urlsplit(self.path).query)
            start, end = float(asked["start"][0]), float(asked["end"][0])
            step = float(asked["step"][0])
            values = [[start + step * i, "0.001"] for i in range(int((end - start) / step) + 1)]
            status = 200
            body = {
                "status": "success",
                "data": {"resultType": "matrix", "result": [{"metric": {}, "values": values}]},
            }
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def prometheus() -> Iterator[type[_Prometheus]]:
    handler = type("Handler", (_Prometheus,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    try:
        yield handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def gate_file(tmp_path: Path, url: str = "http://127.0.0.1:9") -> Path:
    path = tmp_path / "release.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            interval: 1m
            vars: {{version: stable}}
            probes:
              prom: {{type: prometheus, url: "{url}", retries: 0, timeout: 5}}
            criteria:
              - name: error-rate
                probe: prom
                query: 'sum(rate(errors{{version="${{version}}"}}[2m]))'
                go: "< 1%"
            """
        )
    )
    return path


def run(cli: typer.Typer, *args: str | Path) -> Result:
    result = CliRunner().invoke(cli, ["replay", *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "2026-11-24T12:00:00Z", "--to", "2026-11-24T10:00:00Z"], "must be before"),
        (["--from", "-30d", "--to", "now", "--step", "1m"], "a replay has at most 20,000"),
        (["--from", "-1h", "--var", "colour=blue"], "colour"),
        (["--from", "-1h", "--var", "no-equals"], "name=value"),
        (["--from", "last tuesday"], "neither RFC 3339"),
        (["--from", "2026-11-24T10:00:00"], "needs a time zone"),
        (["--from", "-1h", "--step", "soon"], "--step: bad duration"),
    ],
)
def test_bad_input_is_a_clear_message_and_exit_3(
    cli: typer.Typer, tmp_path: Path, args: list[str], message: str
) -> None:
    result = run(cli, gate_file(tmp_path), *args)
    assert result.exit_code == 3, result.output
    assert message in result.stderr
    assert result.stderr.startswith("error: ")


def test_a_missing_or_invalid_gate_file_is_exit_3(cli: typer.Typer, tmp_path: Path) -> None:
    assert run(cli, tmp_path / "nope.yaml", "--from", "-1h").exit_code == 3
    broken = tmp_path / "broken.yaml"
    broken.write_text("criteria: [\n")
    result = run(cli, broken, "--from", "-1h")
    assert result.exit_code == 3 and "not a valid gate file" in result.stderr


def test_a_range_api_answering_errors_is_exit_3_with_its_cause(
    cli: typer.Typer, tmp_path: Path, prometheus: type[_Prometheus]
) -> None:
    page = tmp_path / "replay.html"
    url: str = prometheus.url  # type: ignore[attr-defined]
    result = run(cli, gate_file(tmp_path, url), "--from", "-2h", "--to", "-1h", "--html", page)
    assert result.exit_code == 3, result.output
    assert "every range read of error-rate failed" in result.stderr
    assert "parse error at char 7" in result.stderr
    # The page still shows what happened, with the source's words escaped.
    text = page.read_text()
    assert "<script" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_a_replay_that_ran_is_exit_0_with_spans_and_summary(
    cli: typer.Typer, tmp_path: Path, prometheus: type[_Prometheus]
) -> None:
    prometheus.fail = False
    result = run(
        cli,
        gate_file(tmp_path, prometheus.url),  # type: ignore[attr-defined]
        "--from",
        "2026-11-18T10:00:00Z",
        "--to",
        "2026-11-18T11:00:00Z",
        "--json",
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["summary"]["steps"] == 61 == len(body["timeline"])
    assert body["criteria"][0]["reads"] == 1
