from django.core.management.base import BaseCommand, CommandError

from audit import checkpoints, services


class Command(BaseCommand):
    help = "Seal pending audit events and sign a checkpoint over the ones not yet covered."

    def handle(self, *args, **options):
        services.audit_seal_all()
        try:
            checkpoint = checkpoints.checkpoint_create()
        except checkpoints.CheckpointError as exc:
            raise CommandError(str(exc)) from None
        if checkpoint is None:
            self.stdout.write("no new sealed events since the last checkpoint")
            return
        self.stdout.write(
            f"checkpoint #{checkpoint.pk}: seq {checkpoint.first_seq}..{checkpoint.last_seq}, "
            f"head {checkpoint.head_hash}, signed by key {checkpoint.key_fingerprint}"
        )
