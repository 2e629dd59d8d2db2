"""A closed loop on a view that is not streaming (make query-cost): each user sends its next
request as soon as the last is answered, so the requests per second are what the server
serves, and the response times what each request takes at that load.

    locust -f locustfiles/queries.py --headless -u 16 -r 16 -t 10s --reset-stats \
        --host http://127.0.0.1:8000 --queries-path '/queries/?n=10'

A request not answered within --queries-timeout-s fails.
"""

from locust import FastHttpUser, events, task


@events.init_command_line_parser.add_listener
def add_options(parser):
    parser.add_argument(
        "--queries-path",
        default="/queries/?n=10",
        env_var="BENCH_QUERIES_PATH",
        help="the path each request asks for (benchapp's /queries/: n lookups, wait_ms halfway)",
    )
    parser.add_argument(
        "--queries-timeout-s",
        type=float,
        default=10.0,
        env_var="BENCH_QUERIES_TIMEOUT_S",
        help="a request unanswered this long fails, s",
    )


class QueriesUser(FastHttpUser):
    def __init__(self, environment):
        o = environment.parsed_options
        self.network_timeout = self.connection_timeout = o.queries_timeout_s
        super().__init__(environment)

    def wait_time(self):
        return 0

    @task
    def ask(self):
        path = self.environment.parsed_options.queries_path
        self.client.get(path, name=path)
