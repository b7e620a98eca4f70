"""What every layer shares: errors, REST glue, authentication, storage, queues, tasks."""
