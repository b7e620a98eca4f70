"""What workflow announces to the layer above it (jobs), which subscribes in its app config.

Workflow imports no job code: where a workflow event should start work elsewhere (a claimed
task's volume encoded ahead of the annotator's first prompt), it sends a signal here.
"""

from django.dispatch import Signal

# Sent by ``task_claim_next`` once a task is the user's, with ``task`` and ``user``.
task_claimed = Signal()
