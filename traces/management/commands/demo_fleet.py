"""manage.py demo_fleet: a simulated fleet of AI agents sending OTLP traffic (see traces/demo.py)."""

from django.core.management.base import BaseCommand, CommandError

from traces.demo import DemoFleet


class Command(BaseCommand):
    help = "Simulate a fleet of AI agents sending OTLP traces to a cockpit."

    def add_arguments(self, parser):
        parser.add_argument(
            "--url", default="http://127.0.0.1:8000", help="The cockpit's base URL."
        )
        parser.add_argument("--key", required=True, help="A project ingest key (ck_…).")
        parser.add_argument("--rate", type=float, default=1.0, help="Runs per second, fleet-wide.")
        parser.add_argument("--duration", type=float, default=None, help="Stop after S seconds.")
        parser.add_argument(
            "--once", action="store_true", help="Send one run per agent, flush and exit."
        )
        parser.add_argument("--seed", type=int, default=None, help="Repeat the same runs.")

    def handle(self, *args, url, key, rate, duration, once, seed, **options):
        if rate <= 0:
            raise CommandError("--rate must be above 0")
        fleet = DemoFleet(url, key, seed=seed)
        try:
            if once:
                for sent in fleet.send_once():
                    self.stdout.write(f"{sent.agent} {sent.version} {sent.trace_id} {sent.outcome}")
                if not fleet.flush() or fleet.export_failures:
                    raise CommandError(
                        f"{fleet.export_failures} batches could not be delivered to"
                        f" {fleet.endpoint}; see the log above."
                    )
                self.stdout.write(f"{fleet.spans_exported} spans delivered.")
            else:
                self.stdout.write(
                    f"Sending {len(fleet.profiles)} demo agents to {fleet.endpoint} at {rate} runs/s"
                    " (Ctrl-C stops)."
                )
                fleet.run(rate=rate, duration=duration)
                fleet.flush()
        except KeyboardInterrupt:
            fleet.close(flush=False)
            return
        fleet.close()
