"""Issue a project ingest key for automation: the key alone on stdout, everything else on stderr.

KEY=$(python manage.py create_ingest_key --project acme --label ci)
"""

from django.core.management.base import BaseCommand, CommandError
from django.core.validators import slug_re
from django.db import transaction

from traces.models import IngestKey, Project


class Command(BaseCommand):
    help = "Create an ingest key for a project and print it (only it) on stdout."

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="The project's name.")
        parser.add_argument("--label", default="", help="What the key is for, e.g. 'ci'.")
        parser.add_argument(
            "--create-project",
            action="store_true",
            help="Create the project if it does not exist yet.",
        )

    def handle(self, *args, project: str, label: str, create_project: bool, **options):
        max_label = IngestKey._meta.get_field("label").max_length
        if len(label) > max_label:
            raise CommandError(f"--label must be at most {max_label} characters.")
        max_name = Project._meta.get_field("name").max_length
        if len(project) > max_name or not slug_re.fullmatch(project):
            raise CommandError(
                f"--project {project!r} is not a valid project name: "
                f"up to {max_name} letters, digits, hyphens and underscores."
            )

        with transaction.atomic():
            if create_project:
                target, created = Project.objects.get_or_create(name=project)
                if created:
                    self.stderr.write(f"Created project {project}.")
            else:
                target = Project.objects.filter(name=project).first()
                if target is None:
                    raise CommandError(
                        f"No project named {project!r}. "
                        "Create it in the cockpit, or pass --create-project."
                    )
            key, plaintext = IngestKey.issue(target, label=label)

        self.stderr.write(
            f"Issued key {key.prefix}… for project {target.name}. It is shown once: store it now."
        )
        # Nothing else goes to stdout: scripts capture it whole as the key.
        self.stdout.write(plaintext)
